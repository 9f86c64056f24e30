// authorized_keys: fmc's block only; the operator's own keys and other checkouts' admin
// keys are kept; removals are named in risk notes; a re-plan after apply is empty.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { authorizedKeysChange, KEYS_BEGIN, KEYS_END } from "../../src/ops/keys.js";
import { tempDir } from "../helpers.js";

const ctx = { host: "h1", phase: "base", mask: (t: string) => t };
const k = (id: string, comment: string) => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${id.padEnd(43, "x")} ${comment}`;
const alice = k("alice", "alice@laptop");
const bob = k("bob", "bob@desk");
const mine = k("adminA", "fmc-admin");
const teammate = k("adminB", "fmc-admin");
const cloudInit = k("provider", "provider-console");

function factsWith(content: string | null): HostFacts {
  const file = content === null ? "/root/.ssh/authorized_keys -" : `/root/.ssh/authorized_keys 600 root root ${Buffer.from(content).toString("base64")}`;
  return parseFacts("h1", ["@os", "ID=debian", "@files", file, "@end"].join("\n"));
}
const spec = (keys: string[]) => ({ user: "root", path: "/root/.ssh/authorized_keys", keys, group: "root" });

test("a fresh host gets fmc's block with the spec's keys and this checkout's admin key", () => {
  const c = authorizedKeysChange(factsWith(null), spec([alice, mine]), ctx)!;
  assert.equal(c.file!.content, [KEYS_BEGIN, alice, mine, KEYS_END, ""].join("\n"));
  assert.equal(c.file!.mode, 0o600);
  assert.deepEqual(c.notes, []);
});

test("keys outside the block are the operator's: kept verbatim, never duplicated into the block", () => {
  const existing = [`# added by the provider`, cloudInit, alice, ""].join("\n");
  const c = authorizedKeysChange(factsWith(existing), spec([alice, mine]), ctx)!;
  assert.equal(c.file!.content, [`# added by the provider`, cloudInit, alice, KEYS_BEGIN, mine, KEYS_END, ""].join("\n"));
  assert.match(c.notes.join("\n"), /rewrites root's authorized_keys: 1 added, 0 removed; 2 key\(s\) outside fmc's block kept/);
});

test("a fresh clone keeps the teammate's admin key; a key dropped from the spec is removed with a note", () => {
  const before = [KEYS_BEGIN, alice, bob, teammate, KEYS_END, ""].join("\n");
  // this checkout has its own admin key, and bob left the spec
  const c = authorizedKeysChange(factsWith(before), spec([alice, mine]), ctx)!;
  const after = c.file!.content;
  assert.ok(after.includes(teammate), "the other checkout's admin key stays");
  assert.ok(after.includes(mine));
  assert.ok(!after.includes(bob));
  assert.ok(c.notes.some((n) => /^removes ssh-ed25519 …x+ bob@desk from root's authorized_keys: whoever logs in only with it loses access$/.test(n)), c.notes.join("\n"));
  assert.ok(!c.notes.some((n) => n.includes("fmc-admin") && n.startsWith("removes")));
  // applied, the next plan is empty
  assert.equal(authorizedKeysChange(factsWith(after), spec([alice, mine]), ctx), undefined);
});

test("the written file works with OpenSSH: ssh-keygen reads every key in it", (t) => {
  const dir = tempDir(t);
  const real = join(dir, "id");
  spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "fmc-admin", "-f", real]);
  const pub = readFileSync(`${real}.pub`, "utf8").trim();
  const c = authorizedKeysChange(factsWith(`${cloudInit.replace(/x+/, "")}\n`), spec([pub]), ctx)!;
  const file = join(dir, "authorized_keys");
  spawnSync("sh", ["-c", `cat > ${file}`], { input: c.file!.content });
  const r = spawnSync("ssh-keygen", ["-l", "-f", file], { encoding: "utf8" });
  assert.match(r.stdout, /fmc-admin \(ED25519\)/);
});
