// The login user's home comes from the host's passwd (getent passwd, a fact), not from
// /home/<user>: the fact script reads "~user/…" files where that home really is, and base
// writes the authorized keys there. root's home is /root; a login user the host lacks is an error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { emptyRequest, factScript, parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { base } from "../../src/phases/base.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import { KEYS_BEGIN } from "../../src/ops/keys.js";
import { FmcError } from "../../src/errors.js";
import { contextFor } from "../helpers.js";

test("the fact script reads ~user/… in the home this host's passwd gives that user", () => {
  // daemon's home is not /home/daemon on Debian (nor on RHEL): /usr/sbin, /sbin
  const home = spawnSync("getent", ["passwd", "daemon"], { encoding: "utf8" }).stdout.split(":")[5];
  assert.ok(home && home !== "/home/daemon", `daemon's home here: ${home}`);
  const req = emptyRequest();
  for (const f of ["~daemon/.ssh/authorized_keys", "~fmc-no-such-user/.ssh/authorized_keys"]) req.files.add(f);
  req.users.add("daemon");
  const r = spawnSync("bash", ["-c", factScript(req)], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const facts = parseFacts("here", r.stdout);
  assert.equal(facts.users.get("daemon")?.home, home);
  assert.ok(facts.files.has(`${home}/.ssh/authorized_keys`), [...facts.files.keys()].join(", "));
  assert.equal(facts.files.get(`${home}/.ssh/authorized_keys`), null, "read there (absent)");
  assert.equal(facts.files.get("~fmc-no-such-user/.ssh/authorized_keys"), null, "a user the host lacks has no such file");
});

const ctx = contextFor();
const pcAs = (user: string): PhaseContext => ({ render: ctx, mask: (t) => ctx.secrets.mask(t), loginUser: () => user });
const b64 = (s: string) => Buffer.from(s).toString("base64");
const OPERATOR_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorsOwnKeyOperatorsOwnKeyOperat0 operator@laptop";
function factsOf(users: string[], files: Record<string, string> = {}): HostFacts {
  return parseFacts("master1", ["@os", "ID=debian", 'VERSION_ID="12"', "@hostname", "master1", "@files", ...Object.entries(files).map(([p, c]) => `${p} 600 deploy deploy ${b64(c)}`), "@users", ...users, "@end", ""].join("\n"));
}
const keysChange = (pc: PhaseContext, facts: HostFacts) => base.plan(pc, ctx.topo.host("master1"), facts).find((c) => c.file?.content.includes(KEYS_BEGIN));

test("base writes the login user's authorized keys in its home from passwd, keeping the keys already there", () => {
  const host = ctx.topo.host("master1");
  const req = base.facts(pcAs("deploy"), host);
  assert.ok(req.users?.has("deploy"), "base asks the host's passwd about the login user");
  const facts = factsOf(["deploy:x:1001:1001::/srv/deploy:/bin/bash"], { "/srv/deploy/.ssh/authorized_keys": `${OPERATOR_KEY}\n` });
  const keys = keysChange(pcAs("deploy"), facts)!;
  assert.equal(keys.file!.path, "/srv/deploy/.ssh/authorized_keys");
  assert.ok(keys.file!.content.startsWith(`${OPERATOR_KEY}\n${KEYS_BEGIN}\n`), "the operator's key found there stays");
  assert.match(keys.title, /^update deploy's authorized keys/);
  // root: /root, whether or not passwd was read
  assert.equal(keysChange(pcAs("root"), factsOf([]))!.file!.path, "/root/.ssh/authorized_keys");
  assert.equal(keysChange(pcAs("root"), factsOf(["root:x:0:0:root:/root:/bin/bash"]))!.file!.path, "/root/.ssh/authorized_keys");
});

test("a login user the host's passwd does not have is an error naming it", () => {
  assert.throws(() => keysChange(pcAs("deploy"), factsOf(["deploy"])), (e: FmcError) => e instanceof FmcError && e.code === "NO_SUCH_USER" && /master1: the login user deploy is not in the host's passwd/.test(e.message));
});
