// Day-2 runbooks and apply exclude each other: every command that changes hosts takes the same
// lock (the state directory's hosts.lock and a lock file on each host), whatever its name, so
// an apply can't start K3s again mid-restore and an upgrade can't restart a server while a
// certificate rotation restarts another. Runbooks run through carryOut, as the CLI runs them,
// against hosts played by this machine's bash (test/shell-transport.ts); a second command runs
// in a child process where it must be another process (the lock names its pid).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { carryOut } from "../../src/cli/runbook-cli.js";
import { cmd } from "../../src/hosts/command.js";
import type { RunbookStep } from "../../src/runbooks/runbook.js";
import { acquireLock } from "../../src/state/lock.js";
import { FmcError } from "../../src/errors.js";
import { ROOT, tempDir } from "../helpers.js";
import { ShellTransport } from "../shell-transport.js";

const quiet = { heading: "In this order:", plan: false, yes: true, question: "Go?" } as const;

/** carryOut as the CLI calls it, without asking. */
const run = (o: Omit<Parameters<typeof carryOut>[0], keyof typeof quiet>): Promise<boolean> => carryOut({ ...quiet, ...o });

/** A step that marks the host it ran on: proof that a refused command changed nothing. */
const touchStep = (host: ShellTransport): RunbookStep => ({ title: "change the host", on: host.host, command: cmd("touch", join(host.root, "changed")) });

function refusedNaming(code: string, ...parts: string[]): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof FmcError, `expected an FmcError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `"${p}" not in: ${e.message}`);
    return true;
  };
}

test("while an apply holds the state lock, a day-2 runbook is refused naming it, and changes nothing", { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const stateDir = join(dir, ".fmc");
  const master1 = new ShellTransport("master1", join(dir, "master1"));
  // the state lock as the apply command took it (and fmc wireguard still does)
  const apply = acquireLock(stateDir);
  try {
    for (const what of ["node remove", "restore etcd", "upgrade", "certs rotate", "reset", "node add"]) {
      await assert.rejects(run({ steps: [touchStep(master1)], transports: new Map([["master1", master1]]), stateDir, what }), refusedNaming("LOCKED", "another fmc apply is running", `(pid ${process.pid},`, `fmc ${what} changes the same hosts`));
    }
    assert.equal(existsSync(join(master1.root, "changed")), false, "a refused runbook ran a step");
  } finally {
    apply.release();
  }
});

test("while a runbook runs, apply's lock is refused naming the runbook; the host carries a lock naming it too", { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const stateDir = join(dir, ".fmc");
  const master1 = new ShellTransport("master1", join(dir, "master1"));
  let seen: { apply?: unknown; hostLock?: string } = {};
  const step: RunbookStep = {
    title: "restore on master1",
    on: "master1",
    act: async () => {
      try {
        acquireLock(stateDir).release();
        seen.apply = "taken";
      } catch (e) {
        seen.apply = e;
      }
      seen.hostLock = existsSync(master1.path("fmc.lock")) ? readFileSync(master1.path("fmc.lock"), "utf8") : undefined;
    },
  };
  assert.equal(await run({ steps: [step], transports: new Map([["master1", master1]]), stateDir, what: "restore etcd" }), true);
  assert.ok(seen.apply instanceof FmcError, `apply's lock was ${String(seen.apply)} while fmc restore etcd ran`);
  refusedNaming("LOCKED", "another fmc restore etcd is running", `(pid ${process.pid},`)(seen.apply);
  assert.ok(seen.hostLock, "no lock on master1 while the restore ran");
  const onHost = JSON.parse(seen.hostLock!) as { what: string; pid: number; stateDir: string };
  assert.equal(onHost.what, "restore etcd");
  assert.equal(onHost.pid, process.pid);
  assert.equal(onHost.stateDir, stateDir);
  // released at the end: the host's lock is gone and the next command runs
  assert.equal(existsSync(master1.path("fmc.lock")), false);
  acquireLock(stateDir).release();
});

test("a runbook that fails still releases both locks", { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const stateDir = join(dir, ".fmc");
  const hosts = ["master1", "master2"].map((h) => new ShellTransport(h, join(dir, h)));
  const transports = new Map(hosts.map((h) => [h.host, h]));
  let lockedDuring = 0;
  const steps: RunbookStep[] = [
    { title: "check the locks", on: "this machine", act: async () => void (lockedDuring = hosts.filter((h) => existsSync(h.path("fmc.lock"))).length) },
    { title: "fail", on: "master2", command: cmd("false") },
  ];
  await assert.rejects(run({ steps, transports, stateDir, what: "upgrade" }), refusedNaming("STOPPED", "stopped at step 2 of 2"));
  assert.equal(lockedDuring, 2, "the hosts were not locked while the upgrade ran");
  for (const h of hosts) assert.equal(existsSync(h.path("fmc.lock")), false, `${h.host}'s lock was left behind`);
  acquireLock(stateDir).release();
  assert.equal(await run({ steps: [touchStep(hosts[0]!)], transports, stateDir, what: "upgrade" }), true);
});

// The first command, in its own process: a runbook whose step waits until stdin ends.
const HOLDER = `
const { carryOut } = await import(process.env.RUNBOOK_CLI);
const { ShellTransport } = await import(process.env.SHELL_TRANSPORT);
process.argv = [process.execPath, "/usr/lib/node_modules/flatcar-microcloud/bin/fmc.js", ...JSON.parse(process.env.ARGS)];
const host = new ShellTransport("master1", process.env.HOST_ROOT);
const ended = new Promise((resolve) => { process.stdin.on("end", resolve); process.stdin.resume(); });
const step = { title: "hold", on: "this machine", act: async () => { console.log("running"); await ended; } };
process.stdout.write = ((write) => (chunk, ...rest) => (/^(running|done)\\n$/.test(String(chunk)) ? write(chunk, ...rest) : true))(process.stdout.write.bind(process.stdout));
await carryOut({ heading: "", steps: [step], transports: new Map([["master1", host]]), plan: false, yes: true, question: "", stateDir: process.env.STATE_DIR, what: process.env.WHAT });
console.log("done");
`;

/** Starts HOLDER; resolves once its step runs, with its pid and a function that lets it finish. */
async function holder(t: { after: (fn: () => void) => void }, env: { stateDir: string; hostRoot: string; what: string; args: string[] }): Promise<{ pid: number; finish: () => Promise<string> }> {
  const c = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", HOLDER], {
    cwd: ROOT,
    env: {
      ...process.env,
      RUNBOOK_CLI: pathToFileURL(join(ROOT, "src/cli/runbook-cli.ts")).href,
      SHELL_TRANSPORT: pathToFileURL(join(ROOT, "test/shell-transport.ts")).href,
      STATE_DIR: env.stateDir,
      HOST_ROOT: env.hostRoot,
      WHAT: env.what,
      ARGS: JSON.stringify(env.args),
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  t.after(() => {
    if (c.exitCode === null && c.signalCode === null) c.kill();
  });
  let stderr = "";
  c.stderr!.on("data", (d) => (stderr += d));
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => c.on("exit", resolve));
  const started = new Promise<void>((resolve, reject) => {
    createInterface({ input: c.stdout! }).on("line", (l) => {
      lines.push(l);
      if (l === "running") resolve();
    });
    void exited.then((code) => reject(new Error(`the first command exited (${code}) before its step ran: ${stderr}`)));
  });
  await started;
  return {
    pid: c.pid!,
    finish: async () => {
      if (c.exitCode !== null || c.signalCode !== null) assert.fail(`the first command exited (${c.exitCode ?? c.signalCode}) before it was let finish: ${stderr}`);
      c.stdin!.on("error", () => undefined); // it may exit meanwhile: its exit code and stderr tell why
      c.stdin!.end();
      const code = await exited;
      assert.equal(code, 0, stderr);
      return lines.join("\n");
    },
  };
}

test("two runbooks at once from one state directory: the second is refused naming the first's command line and pid", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const stateDir = join(dir, ".fmc");
  const master1 = new ShellTransport("master1", join(dir, "master1"));
  const first = await holder(t, { stateDir, hostRoot: master1.root, what: "upgrade", args: ["upgrade", "--to", "v1.33.5+k3s1", "--yes"] });
  try {
    await assert.rejects(
      run({ steps: [touchStep(master1)], transports: new Map([["master1", master1]]), stateDir, what: "certs rotate" }),
      refusedNaming("LOCKED", "another fmc upgrade is running", `(pid ${first.pid},`, "fmc upgrade --to v1.33.5+k3s1 --yes", "fmc certs rotate changes the same hosts"),
    );
    assert.equal(existsSync(join(master1.root, "changed")), false);
  } finally {
    assert.match(await first.finish(), /done/);
  }
  // the first one's end released it
  assert.equal(await run({ steps: [touchStep(master1)], transports: new Map([["master1", master1]]), stateDir, what: "certs rotate" }), true);
});

test("two operators (two state directories) on one host: the second is refused by the host's lock, naming the first", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const master1 = new ShellTransport("master1", join(dir, "master1"));
  const first = await holder(t, { stateDir: join(dir, "alice", ".fmc"), hostRoot: master1.root, what: "node remove", args: ["node", "remove", "master2", "--yes"] });
  try {
    await assert.rejects(
      run({ steps: [touchStep(master1)], transports: new Map([["master1", master1]]), stateDir: join(dir, "bob", ".fmc"), what: "restore etcd" }),
      refusedNaming("HOST_LOCKED", "master1: /run/fmc.lock is held by fmc node remove master2 --yes", `pid ${first.pid} on `, `state ${join(dir, "alice", ".fmc")}`),
    );
    assert.equal(existsSync(join(master1.root, "changed")), false, "the refused restore ran a step");
    // bob's refusal left alice's lock alone, and left nothing of bob's
    assert.match(readFileSync(master1.path("fmc.lock"), "utf8"), /"what":"node remove"/);
    acquireLock(join(dir, "bob", ".fmc")).release();
  } finally {
    await first.finish();
  }
  assert.equal(existsSync(master1.path("fmc.lock")), false);
});
