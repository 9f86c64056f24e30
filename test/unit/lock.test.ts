// The state directory's locks (hosts.lock: apply and every day-2 runbook; secrets.lock): held while its process runs, taken over when that process is gone (by
// exactly one of several racing processes), never taken over when it can't be judged, and
// released only by its own acquisition. Real processes on real files in a temp directory.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { acquireLock, commandLine, HOSTS_LOCK } from "../../src/state/lock.js";
import { FmcError } from "../../src/errors.js";
import { ROOT, tempDir } from "../helpers.js";

/** The pid of a process that has exited (and was reaped). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", ""]);
  assert.equal(r.status, 0);
  return r.pid!;
}

function lockRecord(pid: number, host = hostname()): string {
  return JSON.stringify({ pid, host, token: randomBytes(16).toString("hex"), started: "2024-01-01T00:00:00.000Z" });
}

function locked(pid?: number): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof FmcError, `expected an FmcError, got ${String(e)}`);
    assert.equal(e.code, "LOCKED", e.message);
    if (pid !== undefined) assert.match(e.message, new RegExp(`\\(pid ${pid}\\b`));
    return true;
  };
}

test("a held lock refuses a second acquire with the holder's pid; after release it can be taken again", (t) => {
  const dir = tempDir(t);
  const lock = acquireLock(dir);
  assert.throws(() => acquireLock(dir), locked(process.pid));
  assert.throws(() => acquireLock(dir), (e) => e instanceof FmcError && e.hint!.includes(join(dir, "hosts.lock")));
  lock.release();
  acquireLock(dir).release();
  // another name is another lock
  const a = acquireLock(dir);
  const b = acquireLock(dir, "secrets");
  a.release();
  b.release();
});

test("every command that changes hosts takes the one hosts lock: a refusal names the holder's operation, command line and pid", (t) => {
  const dir = tempDir(t);
  const upgrade = acquireLock(dir, HOSTS_LOCK, 0, { what: "upgrade", command: "fmc upgrade --to v1.33.5+k3s1 --yes" });
  const record = JSON.parse(readFileSync(join(dir, "hosts.lock"), "utf8"));
  assert.equal(record.what, "upgrade");
  assert.equal(record.command, "fmc upgrade --to v1.33.5+k3s1 --yes");
  for (const what of ["apply", "node remove", "restore etcd", "certs rotate", "reset"]) {
    assert.throws(
      () => acquireLock(dir, HOSTS_LOCK, 0, { what }),
      (e) => locked(process.pid)(e) && (e as FmcError).message === `another fmc upgrade is running (pid ${process.pid}, since ${record.started}: fmc upgrade --to v1.33.5+k3s1 --yes); fmc ${what} changes the same hosts, so it does not run meanwhile`,
    );
  }
  // the default is the hosts lock (what fmc wireguard takes)
  assert.throws(() => acquireLock(dir), locked(process.pid));
  upgrade.release();
  // a lock written before the holder was recorded is still read, and named by the taker's operation
  writeFileSync(join(dir, "hosts.lock"), lockRecord(process.pid));
  assert.throws(() => acquireLock(dir, HOSTS_LOCK, 0, { what: "reset" }), (e) => locked(process.pid)(e) && (e as FmcError).message.startsWith("another fmc reset is running"));
});

test("the command line a lock records is fmc's, secrets masked", () => {
  const argv = process.argv;
  try {
    process.argv = [process.execPath, "/opt/fmc/bin/fmc.js", "node", "remove", "master2", "--yes", "it's"];
    assert.equal(commandLine(), "fmc node remove master2 --yes 'it'\\''s'");
    process.argv = [process.execPath, "/opt/fmc/bin/fmc.js", "apply", "--token", "hunter2"];
    assert.equal(commandLine((t) => t.replaceAll("hunter2", "<secret:x>")), "fmc apply --token <secret:x>");
  } finally {
    process.argv = argv;
  }
});

test("a lock left by a dead process is taken over", (t) => {
  const dir = tempDir(t);
  const path = join(dir, "hosts.lock");
  writeFileSync(path, lockRecord(deadPid()));
  const lock = acquireLock(dir);
  assert.equal(JSON.parse(readFileSync(path, "utf8")).pid, process.pid);
  assert.throws(() => acquireLock(dir), locked(process.pid));
  lock.release();
  assert.deepEqual(readdirSync(dir), []);
});

test("a takeover abandoned by a dead process (its marker left behind) does not block for ever", (t) => {
  const dir = tempDir(t);
  const path = join(dir, "hosts.lock");
  const stale = lockRecord(deadPid());
  writeFileSync(path, stale);
  writeFileSync(`${path}.takeover-${JSON.parse(stale).token}`, lockRecord(deadPid()));
  const lock = acquireLock(dir);
  assert.equal(JSON.parse(readFileSync(path, "utf8")).pid, process.pid);
  lock.release();
  assert.deepEqual(readdirSync(dir), []);
});

test("a lock file that is empty, garbage or of the wrong shape is held, named in the hint, and left untouched", (t) => {
  const cases = ["", "{", "not json", "null", "[]", '{"pid":"12"}', JSON.stringify({ pid: deadPid(), started: "x" }), lockRecord(-5), JSON.stringify({ ...JSON.parse(lockRecord(deadPid())), token: "../../etc" })];
  for (const content of cases) {
    const dir = tempDir(t);
    const path = join(dir, "hosts.lock");
    writeFileSync(path, content);
    assert.throws(
      () => acquireLock(dir),
      (e) => {
        assert.ok(e instanceof FmcError);
        assert.equal(e.code, "LOCKED", `content ${JSON.stringify(content)}: ${e.message}`);
        assert.ok(e.hint?.includes(`remove ${path}`), e.hint);
        return true;
      },
    );
    assert.equal(readFileSync(path, "utf8"), content);
    assert.deepEqual(readdirSync(dir), ["hosts.lock"]);
  }
});

test("a lock from another host is held even if its pid does not run here", (t) => {
  const dir = tempDir(t);
  const path = join(dir, "hosts.lock");
  const content = lockRecord(deadPid(), "some-other-host.example");
  writeFileSync(path, content);
  assert.throws(() => acquireLock(dir), (e) => locked()(e) && (e as FmcError).message.includes("some-other-host.example"));
  assert.equal(readFileSync(path, "utf8"), content);
});

test("release removes only its own lock, not one another holder took over", (t) => {
  const dir = tempDir(t);
  const path = join(dir, "hosts.lock");
  const lock = acquireLock(dir);
  const other = lockRecord(process.pid); // same pid, other token: a reused pid must not matter
  writeFileSync(path, other);
  lock.release();
  assert.equal(readFileSync(path, "utf8"), other);
  assert.throws(() => acquireLock(dir), locked(process.pid));
});

test("releasing twice, or after the file is gone, is harmless", (t) => {
  const dir = tempDir(t);
  const lock = acquireLock(dir);
  lock.release();
  const again = acquireLock(dir);
  lock.release(); // the first acquisition's release must not remove the second one's lock
  assert.throws(() => acquireLock(dir), locked(process.pid));
  again.release();
  again.release();
  assert.deepEqual(readdirSync(dir), []);
});

test("no temp or marker files are left after acquire and release", (t) => {
  const dir = tempDir(t);
  const lock = acquireLock(dir);
  assert.deepEqual(readdirSync(dir), ["hosts.lock"]);
  lock.release();
  assert.deepEqual(readdirSync(dir), []);
  writeFileSync(join(dir, "hosts.lock"), lockRecord(deadPid()));
  const taken = acquireLock(dir);
  assert.deepEqual(readdirSync(dir), ["hosts.lock"]);
  taken.release();
  assert.deepEqual(readdirSync(dir), []);
});

test("a state directory that can't be used is a LOCK_IO error naming the path", (t) => {
  const file = join(tempDir(t), "not-a-dir");
  writeFileSync(file, "");
  assert.throws(() => acquireLock(file), (e) => e instanceof FmcError && e.code === "LOCK_IO" && e.message.includes(file));
});

// Each child loads the lock module once, then for every round waits for the round's go file
// and tries to take that round's stale lock. Winners keep their locks (and stay alive) until
// the parent closes stdin, so a late loser can't legitimately take a released lock.
const CHILD = `
import { existsSync } from "node:fs";
import { join } from "node:path";
const { acquireLock } = await import(process.env.LOCK_MODULE);
const base = process.env.RACE_DIR, rounds = Number(process.env.RACE_ROUNDS);
const nap = new Int32Array(new SharedArrayBuffer(4));
const held = [];
console.log("ready");
for (let r = 0; r < rounds; r++) {
  while (!existsSync(join(base, "go-" + r))) Atomics.wait(nap, 0, 0, 1);
  let out;
  try {
    held.push(acquireLock(join(base, "state-" + r)));
    out = { round: r, ok: true, pid: process.pid };
  } catch (e) {
    out = { round: r, ok: false, code: e.code, message: e.message };
  }
  console.log(JSON.stringify(out));
}
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
`;

interface RaceResult {
  round: number;
  ok: boolean;
  pid?: number;
  code?: string;
  message?: string;
}

test("of several processes racing for one stale lock, exactly one wins and the others name it", { timeout: 60_000 }, async (t) => {
  const N = 8;
  const ROUNDS = 20;
  const base = tempDir(t);
  const dead = deadPid();
  for (let r = 0; r < ROUNDS; r++) {
    mkdirSync(join(base, `state-${r}`));
    writeFileSync(join(base, `state-${r}`, "hosts.lock"), lockRecord(dead));
  }

  // Lines from all children, in arrival order; next() waits for one.
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  const children: ChildProcess[] = [];
  t.after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill();
  });
  for (let i = 0; i < N; i++) {
    const c = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", CHILD], {
      cwd: ROOT,
      env: { ...process.env, LOCK_MODULE: pathToFileURL(join(ROOT, "src/state/lock.ts")).href, RACE_DIR: base, RACE_ROUNDS: String(ROUNDS) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    children.push(c);
    let stderr = "";
    c.stderr!.on("data", (d) => (stderr += d));
    createInterface({ input: c.stdout! }).on("line", (l) => {
      lines.push(l);
      wake?.();
    });
    c.on("exit", (code) => {
      if (code !== 0 && !failure) failure = new Error(`child ${c.pid} exited with ${code}: ${stderr}`);
      wake?.();
    });
  }
  async function next(): Promise<string> {
    while (lines.length === 0) {
      if (failure) throw failure;
      await new Promise<void>((resolve) => (wake = resolve));
    }
    return lines.shift()!;
  }

  for (let i = 0; i < N; i++) assert.equal(await next(), "ready");
  for (let r = 0; r < ROUNDS; r++) {
    writeFileSync(join(base, `go-${r}`), "");
    const results: RaceResult[] = [];
    for (let i = 0; i < N; i++) results.push(JSON.parse(await next()) as RaceResult);
    assert.ok(results.every((x) => x.round === r));
    const winners = results.filter((x) => x.ok);
    assert.equal(winners.length, 1, `round ${r}: ${JSON.stringify(results, null, 1)}`);
    const winner = winners[0]!.pid!;
    for (const l of results.filter((x) => !x.ok)) {
      assert.equal(l.code, "LOCKED", `round ${r}: ${l.message}`);
      assert.match(l.message!, new RegExp(`\\(pid ${winner}\\b`), `round ${r}`);
    }
    const lockFile = join(base, `state-${r}`, "hosts.lock");
    assert.equal(JSON.parse(readFileSync(lockFile, "utf8")).pid, winner);
    assert.deepEqual(readdirSync(join(base, `state-${r}`)), ["hosts.lock"], `round ${r}: leftover files`);
  }
  for (const c of children) c.stdin!.end();
  await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((resolve) => c.on("exit", resolve)))));
  assert.equal(failure, undefined);
});
