// The lock on the hosts (src/engine/hosts-lock.ts): its scripts run for real in bash against a
// host's /run moved into a temporary directory (test/shell-transport.ts). A fresh lock of
// another fmc refuses, naming it; a stale one (not refreshed for the stale time) or one left by
// a dead fmc of this machine and state directory is taken over, and the output says so; the
// holder refreshes it and removes it at the end, and a refusal leaves nothing of its own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { HOST_LOCK_PATH, HOST_LOCK_STALE_S, lockHosts, stateId, type HostLockRecord } from "../../src/engine/hosts-lock.js";
import type { Transport } from "../../src/hosts/transport.js";
import { acquireLock } from "../../src/state/lock.js";
import { FmcError } from "../../src/errors.js";
import { tempDir } from "../helpers.js";
import { ShellTransport } from "../shell-transport.js";

function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", ""]);
  assert.equal(r.status, 0);
  return r.pid!;
}

function foreign(over: Partial<HostLockRecord> = {}): HostLockRecord {
  return {
    token: randomBytes(16).toString("hex"),
    operator: "alice-laptop",
    stateDir: "/home/alice/cluster/.fmc",
    stateId: "0123456789ab",
    what: "upgrade",
    command: "fmc upgrade --to v1.33.5+k3s1 --yes",
    pid: 4242,
    started: "2025-01-01T10:00:00.000Z",
    ...over,
  };
}

/** Puts a lock file on the host, `ageS` seconds old. */
function plant(h: ShellTransport, r: HostLockRecord, ageS = 0): void {
  writeFileSync(h.path("fmc.lock"), `${JSON.stringify(r)}\n`);
  const when = new Date(Date.now() - ageS * 1000);
  utimesSync(h.path("fmc.lock"), when, when);
}

function setup(t: { after: (fn: () => void) => void }, names = ["master1", "master2"]) {
  const dir = tempDir(t);
  const hosts = names.map((n) => new ShellTransport(n, join(dir, n)));
  return { dir, stateDir: join(dir, ".fmc"), hosts, transports: new Map<string, Transport>(hosts.map((h) => [h.host, h])) };
}

test("the lock is on every host while held, names its holder, and is gone after release", { timeout: 30_000 }, async (t) => {
  const { stateDir, hosts, transports } = setup(t);
  const lock = await lockHosts({ stateDir, transports, what: "apply", command: "fmc apply --yes" });
  for (const h of hosts) {
    const r = JSON.parse(readFileSync(h.path("fmc.lock"), "utf8")) as HostLockRecord;
    assert.equal(r.what, "apply");
    assert.equal(r.command, "fmc apply --yes");
    assert.equal(r.pid, process.pid);
    assert.equal(r.operator, hostname());
    assert.equal(r.stateDir, stateDir);
    assert.equal(r.stateId, stateId(stateDir));
    assert.equal(statSync(h.path("fmc.lock")).mode & 0o777, 0o600);
  }
  // the state directory's lock is held too
  assert.throws(() => acquireLock(stateDir), (e) => e instanceof FmcError && e.code === "LOCKED" && e.message.includes("fmc apply --yes"));
  await lock.release();
  await lock.release(); // twice is harmless
  for (const h of hosts) assert.equal(existsSync(h.path("fmc.lock")), false);
  acquireLock(stateDir).release();
  // the commands are what runs on a real host: /run/fmc.lock, no path of this machine
  assert.ok(hosts[0]!.log.every((c) => c.shell.includes(`lock=${HOST_LOCK_PATH}\n`)));
});

test("a fresh lock of another fmc on one host refuses, naming it; nothing of ours is left on any host", { timeout: 30_000 }, async (t) => {
  const { stateDir, hosts, transports } = setup(t, ["master1", "master2", "master3"]);
  const theirs = foreign();
  plant(hosts[1]!, theirs, 30);
  await assert.rejects(lockHosts({ stateDir, transports, what: "node remove" }), (e) => {
    assert.ok(e instanceof FmcError);
    assert.equal(e.code, "HOST_LOCKED", e.message);
    assert.match(e.message, /this fmc node remove needs/);
    assert.ok(e.message.includes(`master2: ${HOST_LOCK_PATH} is held by fmc upgrade --to v1.33.5+k3s1 --yes (fmc upgrade, pid 4242 on alice-laptop, state /home/alice/cluster/.fmc, since 2025-01-01T10:00:00.000Z), refreshed 3`), e.message);
    assert.match(e.hint!, /taken over/);
    return true;
  });
  assert.equal(readFileSync(hosts[1]!.path("fmc.lock"), "utf8"), `${JSON.stringify(theirs)}\n`, "their lock was changed");
  assert.equal(existsSync(hosts[0]!.path("fmc.lock")), false);
  assert.equal(existsSync(hosts[2]!.path("fmc.lock")), false);
  acquireLock(stateDir).release();
});

test("a lock not refreshed for the stale time is taken over, and the output says whose it was", { timeout: 30_000 }, async (t) => {
  const { stateDir, hosts, transports } = setup(t);
  plant(hosts[0]!, foreign(), HOST_LOCK_STALE_S + 60);
  const said: string[] = [];
  const lock = await lockHosts({ stateDir, transports, what: "restore etcd", report: (l) => said.push(l) });
  try {
    assert.equal(JSON.parse(readFileSync(hosts[0]!.path("fmc.lock"), "utf8")).pid, process.pid);
    assert.equal(said.length, 1, said.join("\n"));
    assert.match(said[0]!, new RegExp(`^master1: took over a stale lock ${HOST_LOCK_PATH} of fmc upgrade --to v1.33.5\\+k3s1 --yes \\(fmc upgrade, pid 4242 on alice-laptop.*not refreshed for 3[0-9]{2} s$`));
  } finally {
    await lock.release();
  }
  assert.equal(existsSync(hosts[0]!.path("fmc.lock")), false);
});

test("an unreadable lock counts as held while fresh and is taken over once stale", { timeout: 30_000 }, async (t) => {
  const { stateDir, hosts, transports } = setup(t, ["master1"]);
  writeFileSync(hosts[0]!.path("fmc.lock"), "garbage\n");
  await assert.rejects(lockHosts({ stateDir, transports, what: "apply" }), (e) => e instanceof FmcError && e.code === "HOST_LOCKED" && e.message.includes('an unreadable lock ("garbage")'));
  const old = new Date(Date.now() - (HOST_LOCK_STALE_S + 1) * 1000);
  utimesSync(hosts[0]!.path("fmc.lock"), old, old);
  const lock = await lockHosts({ stateDir, transports, what: "apply" });
  await lock.release();
});

test("a lock left by a dead fmc of this machine and state directory is taken over at once; another state directory's is not", { timeout: 30_000 }, async (t) => {
  const { stateDir, hosts, transports } = setup(t, ["master1"]);
  const mine = foreign({ operator: hostname(), stateDir, stateId: stateId(stateDir), pid: deadPid(), what: "upgrade", command: "fmc upgrade --to v1.33.5+k3s1" });
  plant(hosts[0]!, mine, 5);
  const said: string[] = [];
  const lock = await lockHosts({ stateDir, transports, what: "upgrade", report: (l) => said.push(l) });
  await lock.release();
  assert.match(said.join("\n"), /took over a stale lock .* fmc upgrade --to v1\.33\.5\+k3s1 .*whose process is gone/);
  // the same dead pid from another checkout on this machine: not ours to judge before it goes stale
  plant(hosts[0]!, { ...mine, stateDir: "/elsewhere/.fmc", stateId: stateId("/elsewhere/.fmc") }, 5);
  await assert.rejects(lockHosts({ stateDir, transports, what: "upgrade" }), (e) => e instanceof FmcError && e.code === "HOST_LOCKED" && e.message.includes("state /elsewhere/.fmc"));
});

test("the holder refreshes its host locks while it runs, and says so when one was taken from it", { timeout: 30_000 }, async (t) => {
  const { stateDir, hosts, transports } = setup(t, ["master1"]);
  const said: string[] = [];
  const lock = await lockHosts({ stateDir, transports, what: "upgrade", refreshMs: 20, report: (l) => said.push(l) });
  try {
    const file = hosts[0]!.path("fmc.lock");
    const old = new Date(Date.now() - 200_000);
    utimesSync(file, old, old);
    const deadline = Date.now() + 10_000;
    while (statSync(file).mtimeMs < Date.now() - 100_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(statSync(file).mtimeMs > Date.now() - 100_000, "not refreshed");
    // another fmc took it (it judged it stale): the holder says so once
    plant(hosts[0]!, foreign());
    while (!said.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.match(said[0] ?? "", /^master1: fmc's lock \/run\/fmc\.lock is gone, now held by fmc upgrade --to v1\.33\.5\+k3s1 --yes .*pid 4242 on alice-laptop/);
  } finally {
    await lock.release();
  }
  // release leaves the other fmc's lock in place
  assert.match(readFileSync(hosts[0]!.path("fmc.lock"), "utf8"), /"pid":4242/);
});

test("of several operators racing for one host, exactly one gets it and the others name the winner", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const host = new ShellTransport("master1", join(dir, "master1"));
  const N = 6;
  const results = await Promise.allSettled(Array.from({ length: N }, (_, i) => lockHosts({ stateDir: join(dir, `op${i}`), transports: new Map([["master1", host]]), what: `op${i}`, command: `fmc op${i}` })));
  const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [{ i, lock: r.value }] : []));
  assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
  const winner = won[0]!;
  for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof FmcError && r.reason.code === "HOST_LOCKED" && (r.reason.message as string).includes(`held by fmc op${winner.i} `), String(r.reason));
  assert.match(readFileSync(host.path("fmc.lock"), "utf8"), new RegExp(`"what":"op${winner.i}"`));
  await winner.lock.release();
  assert.equal(existsSync(host.path("fmc.lock")), false);
});

test("a host whose connection fails at release: reported, not thrown, and the state lock is released", { timeout: 30_000 }, async (t) => {
  const { stateDir, hosts } = setup(t, ["master1"]);
  let broken = false;
  const flaky: Transport = { host: "master1", exec: (c) => (broken ? Promise.reject(new FmcError("SSH_LOST", "master1: connection lost")) : hosts[0]!.exec(c)), close: () => {} };
  const said: string[] = [];
  const lock = await lockHosts({ stateDir, transports: new Map([["master1", flaky]]), what: "reset", report: (l) => said.push(l) });
  broken = true;
  await lock.release();
  assert.match(said.join("\n"), /master1: could not remove fmc's lock \/run\/fmc\.lock \(master1: connection lost\); it goes stale after 300 s/);
  acquireLock(stateDir).release();
});

test("a host where the lock can't be taken (no flock) refuses with the reason and leaves nothing behind", { timeout: 30_000 }, async (t) => {
  const { stateDir, hosts, transports } = setup(t);
  const noFlock: Transport = { host: "master2", exec: (c) => hosts[1]!.exec({ ...c, shell: c.shell.replace("command -v flock", "command -v no-such-flock") }), close: () => {} };
  await assert.rejects(lockHosts({ stateDir, transports: new Map([...transports, ["master2", noFlock]]), what: "apply" }), (e) => e instanceof FmcError && e.code === "HOST_LOCK" && e.message.includes("flock(1) is not installed"));
  assert.equal(existsSync(hosts[0]!.path("fmc.lock")), false);
  acquireLock(stateDir).release();
});
