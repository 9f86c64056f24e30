// fmc facts HOST [NAME]: what fmc reads from one host when it plans (pyinfra's `fact`), to
// debug a plan. The request is the engine's: the union of what every phase that touches the
// host asks for (its own hosts and its peers, src/engine/run.ts), read by the same one-round-
// trip script (src/hosts/facts.ts), which only reads. A file's content is shown as a SHA-256
// and, for a file anyone on the host may read, its first lines with secrets masked; a file
// only some may read (0600, 0640) is where secrets live, and nothing of its content is shown.
import { createHash } from "node:crypto";
import { defineCommand } from "citty";
import { didYouMean, FmcError } from "../errors.js";
import { emptyRequest, FACT_NAMES, FACT_SOURCES, gatherFacts, mergeRequests, type FactName, type FactRequest, type FileFact, type HostFacts } from "../hosts/facts.js";
import type { Transport } from "../hosts/transport.js";
import type { Host } from "../model/schema.js";
import type { Masker } from "../ops/change.js";
import type { Phase, PhaseContext } from "../phases/phase.js";
import { maskVerifiers } from "../render/database.js";
import { openSession, type Session, type SessionOptions } from "../engine/session.js";
import { factRequests } from "../engine/run.js";
import { sessionArgs, sessionOptions, type SessionArgs } from "./session-args.js";
import { bold, dim } from "./ui.js";

/** The positionals are the host and the fact: the spec is named with -f here; one host needs no --concurrency. */
const { spec: _spec, concurrency: _concurrency, ...connectArgs } = sessionArgs;

/** Lines of a readable file's content shown, and the longest line shown whole. */
const HEAD_LINES = 5;
const HEAD_WIDTH = 200;

/** NAME checked against the kinds of fact; undefined: all of them. */
function factName(name: string | undefined): FactName | undefined {
  if (name === undefined) return undefined;
  if ((FACT_NAMES as readonly string[]).includes(name)) return name as FactName;
  // "swap" for swapActive: the start of a name is as good a clue as a typo
  const start = FACT_NAMES.find((n) => n.toLowerCase().startsWith(name.toLowerCase()));
  const hint = didYouMean(name, FACT_NAMES) ?? (name && start ? `did you mean "${start}"?` : undefined);
  throw new FmcError("USAGE", `${name}: no such fact`, `${hint ? `${hint} ` : ""}facts: ${FACT_NAMES.join(", ")}`);
}

/** HOST checked against the spec's hosts. */
function specHost(pc: PhaseContext, name: string): Host {
  const hosts = pc.render.spec.hosts;
  const host = hosts.find((h) => h.name === name);
  if (host) return host;
  const hint = didYouMean(name, hosts.map((h) => h.name));
  throw new FmcError("USAGE", `${name}: no such host in the spec`, `${hint ? `${hint} ` : ""}hosts: ${hosts.map((h) => h.name).join(", ")}`);
}

/**
 * What plan reads from `host`: the union of the requests of every phase that has it among its
 * hosts or its peers, as the engine builds it (src/engine/run.ts plan), and those phases' names.
 */
export function hostRequest(pc: PhaseContext, phases: readonly Phase[], host: string): { request: FactRequest; readFor: string[] } {
  return factRequests(pc, phases).get(host) ?? { request: emptyRequest(), readFor: [] };
}

/** The part of a request that asks for one kind of fact (os, hostname, addresses and swap come with every read). */
function requestOf(request: FactRequest, name: FactName): FactRequest {
  const source = FACT_SOURCES[name];
  return source ? mergeRequests(emptyRequest(), { [source]: request[source] } as Partial<FactRequest>) : emptyRequest();
}

/** Whether the request reads this kind of fact from the host at all. */
function isRead(request: FactRequest, name: FactName): boolean {
  const source = FACT_SOURCES[name];
  if (source === null) return true;
  if (source === "storage") return request.storage;
  return request[source].size > 0;
}

interface FactsRead {
  readonly host: string;
  /** The phases that read it ("k3s-servers (as a peer)"). */
  readonly readFor: readonly string[];
  /** What was asked: the whole request, or one kind's part of it. */
  readonly request: FactRequest;
  readonly facts: HostFacts;
  /** Only this kind (fmc facts HOST NAME). */
  readonly only?: FactName;
}

/** Reads the host's facts as plan would: one round trip, read-only; with `only`, just that kind's part of the request. */
async function readHostFacts(pc: PhaseContext, phases: readonly Phase[], t: Transport, host: string, only?: FactName): Promise<FactsRead> {
  const { request, readFor } = hostRequest(pc, phases, host);
  const asked = only ? requestOf(request, only) : request;
  return { host, readFor, request: asked, facts: await gatherFacts(t, asked), ...(only ? { only } : {}) };
}

// ---- what is shown: one value per kind (the JSON), drawn as text from the same values ----

/** WireGuard keys a config holds that the secret store no longer has (after a rotation), and key=value secrets by their name. */
const maskLeftovers = (text: string) =>
  text
    .replace(/^(\s*(?:PrivateKey|PresharedKey)\s*=\s*)\S+/gim, "$1<secret:wireguard key>")
    .replace(/(?<![<\w-])([\w-]*(?:password|passwd|secret|token|auth_pass|psk)[\w-]*["']?\s*[:=]\s*)(?!<secret:)["']?[^\s"',;]+["']?/gi, "$1<masked>")
    .replace(/\b(auth_pass\s+)(?!<secret:)\S+/g, "$1<masked>");

const PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/** Control characters (but tab) would draw on the terminal: shown as "?". */
const printable = (line: string) => line.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, "?");

interface FileView {
  /** Octal, as chmod takes it: "0644". */
  readonly mode: string;
  readonly owner: string;
  readonly group: string;
  /** Bytes of the content as fmc read it. */
  readonly size: number;
  readonly lines: number;
  /** SHA-256 of that content (sha256sum's, for a text file). */
  readonly sha256: string;
  /** Its first lines, secrets masked; absent when `withheld` says why nothing is shown. */
  readonly head?: readonly string[];
  readonly withheld?: string;
}

/** A file as `fmc facts` shows it: never its content whole, and nothing of it unless anyone on the host may read it. */
function fileView(f: FileFact, mask: Masker): FileView {
  const lines = f.content === "" ? 0 : f.content.replace(/\n$/, "").split("\n").length;
  const base = {
    mode: f.mode.toString(8).padStart(4, "0"),
    owner: f.owner,
    group: f.group,
    size: Buffer.byteLength(f.content, "utf8"),
    lines,
    sha256: createHash("sha256").update(f.content, "utf8").digest("hex"),
  };
  if ((f.mode & 0o004) === 0) return { ...base, withheld: "not readable by everyone on the host: where secrets are kept" };
  if (PRIVATE_KEY.test(f.content)) return { ...base, withheld: "holds a private key" };
  const masked = maskLeftovers(maskVerifiers(mask(f.content)));
  const head = masked
    .split("\n")
    .slice(0, Math.min(HEAD_LINES, lines))
    .map((l) => printable(l.length > HEAD_WIDTH ? `${l.slice(0, HEAD_WIDTH)}…` : l));
  return { ...base, head };
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const object = <V, R>(m: ReadonlyMap<string, V>, f: (v: V, k: string) => R): Record<string, R> => Object.fromEntries([...m].sort(([a], [b]) => byName(a, b)).map(([k, v]) => [k, f(v, k)]));
const sorted = (s: Iterable<string>) => [...s].sort(byName);

/** One kind of fact as JSON: maps as objects; null when this host's request does not read it. */
function factValue(r: FactsRead, name: FactName, mask: Masker): unknown {
  const { facts: f, request: q } = r;
  if (!isRead(q, name)) return null;
  switch (name) {
    case "os":
      return { ...f.os };
    case "hostname":
      return f.hostname;
    case "addresses":
      return object(f.addresses, (v) => [...v]);
    case "swapActive":
      return f.swapActive;
    // the script answers every asked file ("~user/…" under its real path): as read
    case "files":
      return object(f.files, (v) => (v ? fileView(v, mask) : null));
    // systemctl may answer for another name (an alias): what it answered, then the asked names it did not
    case "units":
      return { ...object(f.units, (v) => ({ ...v })), ...Object.fromEntries(sorted(q.units).filter((u) => !f.units.has(u)).map((u) => [u, null])) };
    // a package the package manager does not know is not installed, as the phases read it
    case "packages":
      return Object.fromEntries(sorted(q.packages).map((p) => [p, f.packages.get(p) === true]));
    case "sysctl":
      return object(f.sysctl, (v) => (v ? { ...v } : null));
    case "dirs":
      return object(f.dirs, (v) => (v ? { ...v, mode: v.mode.toString(8).padStart(4, "0") } : null));
    case "mounts":
      return object(f.mounts, (v) => ({ ...v }));
    case "blockDevices":
      return object(f.blockDevices, (v) => ({ ...v }));
    case "lvm":
      return { vgs: object(f.lvm.vgs, (v) => ({ ...v })), lvs: object(f.lvm.lvs, (v) => ({ ...v })) };
    case "users":
      return object(f.users, (v) => (v ? { ...v } : null));
    // the script names a guard by its id with unusual characters made "_"
    case "guards": {
      const tests = new Map([...q.guards].map(([id, test]) => [id.replace(/[^A-Za-z0-9_.:/-]/g, "_"), test]));
      return object(f.guards, (code, id) => ({ exit: code, test: mask(tests.get(id) ?? "") }));
    }
  }
}

/** The facts read as one JSON object, keyed by kind. */
function factsJson(r: FactsRead, mask: Masker): Record<string, unknown> {
  return Object.fromEntries((r.only ? [r.only] : FACT_NAMES).map((name) => [name, factValue(r, name, mask)]));
}

type Json = Record<string, unknown>;
const bytes = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${n} B`);

/** Rows of "key  detail" with the keys in one column. */
function rows(entries: Array<[string, string]>): string[] {
  if (!entries.length) return [dim("  (none)")];
  const width = Math.min(48, Math.max(...entries.map(([k]) => k.length)));
  return entries.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`.trimEnd());
}

/** One kind of fact as text, from the same value as its JSON. */
function factText(r: FactsRead, name: FactName, mask: Masker): string[] {
  const v = factValue(r, name, mask);
  const count = v && typeof v === "object" && name !== "os" && name !== "lvm" ? dim(` (${Object.keys(v).length})`) : "";
  const title = bold(name) + count;
  if (v === null) return [title, dim(`  not read: no phase${r.readFor.length ? " that touches this host" : ""} reads ${name} from ${r.host}`)];
  const entries = (o: unknown) => Object.entries(o as Json);
  switch (name) {
    case "os": {
      const os = v as HostFacts["os"];
      return [title, `  ${os.id} ${os.versionId} (${os.family})`];
    }
    case "hostname":
      return [title, `  ${v as string}`];
    case "addresses":
      return [title, ...rows(entries(v).map(([dev, cidrs]) => [dev, (cidrs as string[]).join(", ")]))];
    case "swapActive":
      return [title, `  ${v ? "yes: swap is on" : "no"}`];
    case "files": {
      const out = [title];
      const list = entries(v) as Array<[string, FileView | null]>;
      if (!list.length) out.push(dim("  (none)"));
      for (const [path, file] of list) {
        if (!file) {
          out.push(`  ${path}  ${dim("absent")}`);
          continue;
        }
        out.push(`  ${path}  ${file.mode} ${file.owner}:${file.group}  ${file.size} B, ${file.lines} line${file.lines === 1 ? "" : "s"}  ${dim(`sha256:${file.sha256}`)}`);
        if (file.withheld) out.push(dim(`    content not shown: ${file.withheld}`));
        for (const line of file.head ?? []) out.push(`    ${dim("│")} ${line}`);
        if (file.head && file.lines > file.head.length) out.push(`    ${dim(`│ … ${file.lines - file.head.length} more`)}`);
      }
      return out;
    }
    case "units":
      return [title, ...rows(entries(v).map(([u, s]) => [u, s ? `${(s as { active: string }).active}, ${(s as { enabled: string }).enabled}` : dim("no answer from systemctl")]))];
    case "packages":
      return [title, ...rows(entries(v).map(([p, installed]) => [p, installed ? "installed" : dim("not installed")]))];
    case "sysctl":
      return [title, ...rows(entries(v).map(([k, s]) => [k, s ? `= ${(s as { value: string }).value}${(s as { writable: boolean }).writable ? "" : dim(" (read-only here)")}` : dim("not on this kernel")]))];
    case "dirs":
      return [title, ...rows(entries(v).map(([d, s]) => [d, s ? `${(s as { mode: string }).mode} ${(s as { owner: string }).owner}:${(s as { group: string }).group}` : dim("absent")]))];
    case "mounts":
      return [title, ...rows(entries(v).map(([point, m]) => [point, Object.values(m as Json).join("  ")]))];
    case "blockDevices":
      return [title, ...rows(entries(v).map(([dev, d]) => [dev, `${(d as { type: string }).type}  ${bytes((d as { size: number }).size)}  ${(d as { fstype: string | null }).fstype ?? dim("no filesystem")}`]))];
    case "lvm": {
      const lvm = v as { vgs: Json; lvs: Json };
      return [
        title,
        ...rows([
          ...entries(lvm.vgs).map(([vg, s]): [string, string] => [`vg ${vg}`, `${bytes((s as { size: number }).size)}, ${bytes((s as { free: number }).free)} free`]),
          ...entries(lvm.lvs).map(([lv, s]): [string, string] => [`lv ${lv}`, `${bytes((s as { size: number }).size)}  ${(s as { dmPath: string }).dmPath}`]),
        ]),
      ];
    }
    case "users":
      return [title, ...rows(entries(v).map(([u, s]) => [u, s ? `uid ${(s as { uid: number }).uid}  home ${(s as { home: string }).home}  shell ${(s as { shell: string }).shell}` : dim("no such user")]))];
    case "guards": {
      const out = [title];
      const list = entries(v) as Array<[string, { exit: number; test: string }]>;
      const width = Math.max(0, ...list.map(([id]) => id.length));
      for (const [id, g] of list) {
        out.push(`  ${id.padEnd(width)}  exit ${g.exit}${g.exit === 0 ? " (passes)" : ""}`);
        for (const line of g.test ? g.test.split("\n") : []) out.push(dim(`    ${printable(line)}`));
      }
      return out;
    }
  }
}

/** The facts read as text: a heading, then one section per kind. */
function factsText(r: FactsRead, mask: Masker, where?: string): string {
  const heading = `${bold(r.host)}${where ? dim(` (${where})`) : ""}: ${r.readFor.length ? `facts read for ${r.readFor.join(", ")}` : "no phase of this run touches it: only what every read includes"}`;
  return [heading, ...(r.only ? [r.only] : FACT_NAMES).flatMap((name) => factText(r, name, mask))].join("\n") + "\n";
}

export type FactsArgs = SessionArgs & { host: string; name?: string; json?: boolean };

/** What a session gives `fmc facts` (tests pass their own opener). */
export type FactsSession = Pick<Session, "pc" | "phases" | "transports" | "inventory" | "close">;

/** fmc facts: checks NAME, opens a session to HOST alone (checked against the spec first), reads, and returns what it prints. */
export async function factsOutput(args: FactsArgs, open: (o: SessionOptions) => Promise<FactsSession> = openSession): Promise<string> {
  const only = factName(args.name);
  // the host is checked against the spec the session loads, before any connection to it
  let host: Host | undefined;
  let unknown: unknown;
  const s = await open({
    ...sessionOptions(args),
    hosts: (pc) => {
      try {
        host = specHost(pc, args.host);
        return [host];
      } catch (e) {
        unknown = e;
        return [];
      }
    },
  });
  try {
    if (!host) throw unknown ?? new FmcError("USAGE", `${args.host}: no such host in the spec`);
    const t = s.transports.get(host.name);
    if (!t) throw new FmcError("UNREACHABLE", `${host.name} is not in the ${s.inventory.source} inventory`, s.inventory.source === "lab" ? "the lab was brought up without it (lab up --only): fmc lab status" : undefined);
    const read = await readHostFacts(s.pc, s.phases, t, host.name, only);
    if (args.json) return JSON.stringify(factsJson(read, s.pc.mask), null, 2) + "\n";
    const target = s.inventory.targets.get(host.name);
    return factsText(read, s.pc.mask, target && `${target.address}, ${s.inventory.source} inventory`);
  } finally {
    s.close();
  }
}

export const facts = defineCommand({
  meta: {
    name: "facts",
    description:
      "Print what fmc reads from one host when it plans, to debug a plan: every fact the phases that touch HOST read, or one kind (NAME), e.g. fmc facts loadbalancer1 files. Read-only, as plan; a file is shown by mode, owner, size and SHA-256, with its first lines (secrets masked) only when anyone on the host may read it. While a lab is up, the lab's inventory (lab/inventory.json in the state directory) sends it to the lab's host, as plan",
  },
  args: {
    ...connectArgs,
    host: { type: "positional", required: true, valueHint: "HOST", description: "a host of the spec" },
    name: { type: "positional", required: false, valueHint: "NAME", description: `only this kind of fact: ${FACT_NAMES.join(", ")}` },
    json: { type: "boolean", description: "one JSON object on stdout, keyed by kind (maps as objects; null: not read from this host)", default: false },
  },
  async run({ args }) {
    process.stdout.write(await factsOutput(args));
  },
});
