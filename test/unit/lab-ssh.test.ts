// fmc lab ssh HOST [-- CMD…]: ssh as root with the lab's own key (0600) and the known_hosts
// lab up wrote, StrictHostKeyChecking=yes. The lab here is its state file and key files
// (FMC_LAB_ROOT points at a temporary directory): what ssh is given is checked with
// OpenSSH's own `ssh -G` (it prints the configuration it would use, without connecting),
// and the command is run against a stand-in `ssh` first on PATH that records its argv.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fmc, tempDir } from "../helpers.js";

/** A lab as lab up leaves it: lab.json in the lab root, the key and known_hosts in the state directory. */
function fakeLab(dir: string) {
  const labRoot = join(dir, "lab-root");
  const stateDir = join(dir, "checkout", ".fmc");
  mkdirSync(labRoot, { recursive: true });
  mkdirSync(join(stateDir, "lab"), { recursive: true, mode: 0o700 });
  // the same ssh-keygen call lab up makes (src/lab/lab.ts labPublicKey)
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "fmc-lab", "-f", join(stateDir, "lab", "lab_key")]);
  const hostKey = readFileSync(join(stateDir, "lab", "lab_key.pub"), "utf8").trim().split(" ");
  writeFileSync(join(stateDir, "lab", "known_hosts"), `10.17.4.21 ${hostKey[0]} ${hostKey[1]}\n`, { mode: 0o600 });
  const state = {
    lab: "flatcarmicrocloud",
    stateDir,
    rootLinks: [],
    internet: "198.51.100.2",
    hosts: [{ name: "master1", address: "10.17.4.21", netns: "fmclab-master1", dir: join(labRoot, "labs", "flatcarmicrocloud", "master1"), pid: 4242 }],
  };
  writeFileSync(join(labRoot, "lab.json"), JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  return { dir, labRoot, stateDir };
}

// one lab for the file: lab.js reads FMC_LAB_ROOT once, when it loads
const base = mkdtempSync(join(tmpdir(), "fmc-labssh-"));
after(() => rmSync(base, { recursive: true, force: true }));
const { dir, labRoot, stateDir } = fakeLab(base);
process.env.FMC_LAB_ROOT = labRoot;
const { labSshTarget } = await import("../../src/lab/lab.js");
const { labSshArgv, checkLabSshFiles } = await import("../../src/cli/lab-commands.js");

test("the target: root on port 22 of the host's lab address, the lab's 0600 key and known_hosts", () => {
  const target = labSshTarget("master1");
  assert.deepEqual(target, {
    host: "master1",
    address: "10.17.4.21",
    port: 22,
    user: "root",
    identityFile: join(stateDir, "lab", "lab_key"),
    knownHostsFile: join(stateDir, "lab", "known_hosts"),
  });
  assert.equal(statSync(target.identityFile).mode & 0o777, 0o600, "ssh-keygen writes the key 0600");
  checkLabSshFiles(target);
  assert.throws(() => labSshTarget("master9"), (e: Error & { code?: string; hint?: string }) => e.code === "LAB_HOST" && e.hint === "hosts: master1");
  assert.throws(() => labSshTarget("internet"), (e: Error & { code?: string; hint?: string }) => e.code === "LAB_HOST" && e.hint === "fmc lab exec internet -- CMD [ARG…]");
  // a key others can read is refused before ssh would refuse it; missing files too
  chmodSync(target.identityFile, 0o644);
  assert.throws(() => checkLabSshFiles(target), (e: Error & { code?: string }) => e.code === "LAB_SSH" && /mode 0644/.test(e.message));
  chmodSync(target.identityFile, 0o600);
  assert.throws(() => checkLabSshFiles({ ...target, knownHostsFile: join(stateDir, "lab", "gone") }), (e: Error & { code?: string; hint?: string }) => e.code === "LAB_SSH" && /fmc lab up/.test(e.hint ?? ""));
});

test("the ssh command line, as OpenSSH itself reads it (ssh -G)", (t) => {
  const target = labSshTarget("master1");
  const key = join(stateDir, "lab", "lab_key");
  const knownHosts = join(stateDir, "lab", "known_hosts");
  const argv = labSshArgv(target, []);
  assert.deepEqual(argv, ["ssh", "-i", key, "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile="${knownHosts}"`, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-p", "22", "-l", "root", "10.17.4.21"]);
  assert.deepEqual(labSshArgv(target, ["systemctl", "is-active", "sshd"]).slice(argv.length), ["--", "systemctl", "is-active", "sshd"]);
  if (spawnSync("ssh", ["-V"]).status !== 0) return t.skip("no OpenSSH client here to read the command line");
  const r = spawnSync("ssh", ["-G", ...argv.slice(1)], { encoding: "utf8", env: { PATH: process.env.PATH, HOME: tempDir(t) } });
  assert.equal(r.status, 0, r.stderr);
  const config = new Map<string, string[]>();
  for (const line of r.stdout.split("\n").filter(Boolean)) {
    const [k, ...v] = line.split(" ");
    config.set(k!, [...(config.get(k!) ?? []), v.join(" ")]);
  }
  assert.deepEqual(config.get("user"), ["root"]);
  assert.deepEqual(config.get("hostname"), ["10.17.4.21"]);
  assert.deepEqual(config.get("port"), ["22"]);
  assert.deepEqual(config.get("identityfile"), [key], "the lab's key, and no default key");
  assert.deepEqual(config.get("identitiesonly"), ["yes"]);
  assert.deepEqual(config.get("userknownhostsfile"), [knownHosts]);
  assert.deepEqual(config.get("globalknownhostsfile"), ["/dev/null"]);
  assert.deepEqual(config.get("stricthostkeychecking"), ["true"]);
});

test("fmc lab ssh runs ssh with that command line and exits with its exit code; unknown hosts are refused", (t) => {
  if (process.getuid?.() !== 0) return t.skip("fmc lab ssh needs root (the lab's state is root's)");
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const record = join(dir, "ssh-argv");
  writeFileSync(join(bin, "ssh"), `#!/bin/sh\nprintf '%s\\n' "$@" > ${record}\nexit 7\n`, { mode: 0o755 });
  const env = { FMC_LAB_ROOT: labRoot, PATH: `${bin}:${process.env.PATH}` };
  const r = fmc(["lab", "ssh", "master1", "--", "uptime", "-p"], dir, env);
  assert.equal(r.status, 7, r.stderr);
  const key = join(stateDir, "lab", "lab_key");
  assert.deepEqual(readFileSync(record, "utf8").trimEnd().split("\n"), [
    "-i", key, "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile="${join(stateDir, "lab", "known_hosts")}"`, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-p", "22", "-l", "root", "10.17.4.21", "--", "uptime", "-p",
  ]);
  const login = fmc(["lab", "ssh", "master1"], dir, env);
  assert.equal(login.status, 7);
  assert.equal(readFileSync(record, "utf8").trimEnd().split("\n").at(-1), "10.17.4.21", "no command: a login shell");
  const unknown = fmc(["lab", "ssh", "master9"], dir, env);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /^error\[LAB_HOST\] no lab host master9\n\s+hint: hosts: master1\n$/);
});
