// authorized_keys: fmc manages one marked block and leaves every other line alone. Keys
// an operator put there by hand, or cloud-init from a provider, stay; so do other
// checkouts' generated admin keys (each clone of the spec generates its own, and a
// fresh clone must not lock a teammate out). Keys removed from the spec leave the block,
// with a risk note naming them. Every rewrite says what it adds and removes.
import type { HostFacts } from "../hosts/facts.js";
import type { Change } from "./change.js";
import { fileChange, type Masker } from "./file.js";

export const KEYS_BEGIN = "# BEGIN fmc managed keys: edit ssh.keys in the cluster spec, not these lines";
export const KEYS_END = "# END fmc managed keys";
/** The comment fmc gives its generated admin keys. */
export const ADMIN_KEY_COMMENT = "fmc-admin";

export interface AuthorizedKeysSpec {
  readonly user: string;
  readonly path: string;
  readonly keys: readonly string[];
  readonly group: string;
}

/** "type base64" of a key line: comments and options don't make two keys different. */
function keyId(line: string): string | undefined {
  const m = /(?:^|\s)((?:ssh|ecdsa|sk)-[\w@.-]+)\s+([A-Za-z0-9+/]+=*)/.exec(line);
  return m ? `${m[1]} ${m[2]}` : undefined;
}

const short = (line: string) => {
  const f = line.trim().split(/\s+/);
  const i = f.findIndex((x) => /^(ssh|ecdsa|sk)-/.test(x));
  return i < 0 ? line.slice(0, 40) : `${f[i]} …${(f[i + 1] ?? "").slice(-8)}${f[i + 2] ? ` ${f.slice(i + 2).join(" ")}` : ""}`;
};

export function parseAuthorizedKeys(text: string): { outside: string[]; block: string[] } {
  const outside: string[] = [];
  const block: string[] = [];
  let inside = false;
  for (const line of text.split("\n")) {
    if (line === KEYS_BEGIN) inside = true;
    else if (line === KEYS_END) inside = false;
    else if (inside) {
      if (line.trim() !== "") block.push(line);
    } else outside.push(line);
  }
  while (outside.length && outside.at(-1) === "") outside.pop();
  return { outside, block };
}

export function authorizedKeysChange(facts: HostFacts, k: AuthorizedKeysSpec, ctx: { host: string; phase: string; mask: Masker }): Change | undefined {
  const current = facts.files.get(k.path);
  const { outside, block } = parseAuthorizedKeys(current?.content ?? "");
  const outsideIds = new Set(outside.map(keyId).filter((x): x is string => !!x));
  const wanted: string[] = [];
  const seen = new Set<string>();
  const add = (line: string) => {
    const id = keyId(line);
    if (!id || outsideIds.has(id) || seen.has(id)) return;
    seen.add(id);
    wanted.push(line.trim());
  };
  k.keys.forEach(add);
  // another checkout's generated admin key: kept (remove it by hand to revoke it)
  for (const line of block) if (line.trim().split(/\s+/).at(-1)?.startsWith(ADMIN_KEY_COMMENT)) add(line);
  const content = [...outside, KEYS_BEGIN, ...wanted, KEYS_END, ""].join("\n");
  const change = fileChange(facts, { path: k.path, content, mode: 0o600, owner: k.user, group: k.group }, ctx);
  if (!change) return undefined;
  const wantedIds = new Set(wanted.map(keyId));
  const removed = block.filter((l) => !wantedIds.has(keyId(l)) && !outsideIds.has(keyId(l) ?? ""));
  const blockIds = new Set(block.map(keyId));
  const added = wanted.filter((l) => !blockIds.has(keyId(l)));
  const notes = [...change.notes];
  if (current) notes.push(`rewrites ${k.user}'s authorized_keys: ${added.length} added, ${removed.length} removed; ${outside.filter((l) => keyId(l)).length} key(s) outside fmc's block kept`);
  for (const r of removed) notes.push(`removes ${short(r)} from ${k.user}'s authorized_keys: whoever logs in only with it loses access`);
  return { ...change, title: `${current ? "update" : "create"} ${k.user}'s authorized keys (${k.path})`, notes };
}
