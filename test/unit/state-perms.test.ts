// A state directory left by a run as root (sudo fmc render/apply, fmc lab up), then used
// by a run as another user: a coded error naming the path, its owner and the fix, exit 1,
// no stack trace. The CLI runs for real as uid 65534 (setpriv), on state a root run of
// fmc made; following the printed fix makes the same command work.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FMC, fmc, tempDir, type RunResult } from "../helpers.js";
import { markK3sBootstrapped } from "../../src/state/bootstrap.js";
import { acquireLock } from "../../src/state/lock.js";
import { statePermissionError, stateIo } from "../../src/state/dir.js";
import { FmcError } from "../../src/errors.js";

const NOBODY = 65534;

/** Skips unless this test can switch users: root, with util-linux's setpriv. */
function canSwitch(t: { skip: (why: string) => void }): boolean {
  if (process.getuid?.() !== 0) return void t.skip("runs as root to play both users"), false;
  if (spawnSync("setpriv", ["--version"]).status !== 0) return void t.skip("setpriv (util-linux) is not installed"), false;
  return true;
}

/** fmc as uid/gid 65534 with no supplementary groups, in `cwd`. */
function asNobody(args: string[], cwd: string, input?: string): RunResult {
  const r = spawnSync("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, FMC, ...args], {
    cwd,
    encoding: "utf8",
    input,
    env: { PATH: process.env.PATH, HOME: cwd, NO_COLOR: "1" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A checkout owned by nobody, whose spec (the seed) a root run of fmc rendered: .fmc is root's. */
function checkoutAfterRootRun(t: { after: (fn: () => void) => void }): string {
  const dir = tempDir(t, "fmc-perms-");
  assert.equal(fmc(["init"], dir).status, 0);
  const root = fmc(["render", "-o", join(dir, "out-root")], dir);
  assert.equal(root.status, 0, root.stderr);
  assert.equal(statSync(join(dir, ".fmc")).uid, 0, "the root run made .fmc");
  chownSync(dir, NOBODY, NOBODY);
  chownSync(join(dir, "cluster.yaml"), NOBODY, NOBODY);
  chmodSync(dir, 0o755);
  return dir;
}

function assertRefusal(r: RunResult, path: string, dir: string) {
  assert.equal(r.status, 1, `exit 1; stdout: ${r.stdout} stderr: ${r.stderr}`);
  const [first, hint] = r.stderr.trim().split("\n");
  assert.match(first ?? "", /^error\[STATE_PERMISSION\] cannot /);
  assert.ok(first!.includes(` ${path} (owned by root; you are uid ${NOBODY}): permission denied`), first);
  assert.match(hint ?? "", /a run as root \(sudo\) left it: run fmc as root again/);
  assert.ok(hint!.includes(`chown -R ${NOBODY}:${NOBODY} ${join(dir, ".fmc")}`), hint);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at |Error: E[A-Z]+/, "no stack trace, no raw errno error");
}

test("a .fmc/ a root run made: a plain run stops with STATE_PERMISSION and the fix, and the fix works", (t) => {
  if (!canSwitch(t)) return;
  const dir = checkoutAfterRootRun(t);
  const out = join(dir, "out");
  for (const args of [["render", "-o", out], ["secrets", "list"], ["plan"]]) {
    assertRefusal(asNobody(args, dir), join(dir, ".fmc"), dir);
  }
  assert.equal(existsSync(out), false, "nothing rendered");
  // the fix as printed, run as root
  const hint = asNobody(["secrets", "list"], dir).stderr.match(/as root: (chown -R \S+ \S+)/)?.[1];
  assert.ok(hint);
  assert.equal(spawnSync("sh", ["-c", hint]).status, 0);
  const after = asNobody(["render", "-o", out], dir);
  assert.equal(after.status, 0, after.stderr);
  assert.ok(readdirSync(out).length > 0);
});

test("one root-owned file inside a user's .fmc/ (the K3s bootstrap marker a sudo apply wrote) is named before anything runs", (t) => {
  if (!canSwitch(t)) return;
  const dir = checkoutAfterRootRun(t);
  spawnSync("chown", ["-R", `${NOBODY}:${NOBODY}`, join(dir, ".fmc")]);
  // what apply writes after the first server came up, written by root
  markK3sBootstrapped({ path: join(dir, ".fmc") }, "flatcarmicrocloud", "master1");
  const marker = join(dir, ".fmc", "k3s-bootstrapped.json");
  assert.equal(statSync(marker).uid, 0);
  assert.equal(statSync(marker).mode & 0o777, 0o600);
  for (const args of [["render", "-o", join(dir, "out")], ["secrets", "list"], ["kubeconfig", "--output", join(dir, "kc")]]) {
    const r = asNobody(args, dir);
    assertRefusal(r, marker, dir);
    assert.match(r.stderr, /cannot read and write/);
  }
});

test("the provisioning secret store refuses the same way (fmc provision secret set, token on stdin)", (t) => {
  if (!canSwitch(t)) return;
  const dir = checkoutAfterRootRun(t);
  const r = asNobody(["provision", "secret", "set", "cloudflare-api-token"], dir, "abcdefghijklmnopqrstuvwxyz0123456789\n");
  assertRefusal(r, join(dir, ".fmc"), dir);
  assert.ok(!r.stderr.includes("abcdefghijklmnopqrstuvwxyz"), "the token is never echoed");
});

test("permission errors of state and lock files are STATE_PERMISSION with the state directory's fix; other errors keep their codes", (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "secrets.json"), "{}");
  const denied = Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
  const e = (() => {
    try {
      stateIo(dir, join(dir, "secrets.json"), "read", () => {
        throw denied;
      });
    } catch (x) {
      return x;
    }
  })();
  assert.ok(e instanceof FmcError && e.code === "STATE_PERMISSION", String(e));
  assert.match(e.message, new RegExp(`^cannot read ${join(dir, "secrets.json")} \\(owned by `));
  assert.match(e.hint ?? "", new RegExp(`chown -R \\d+:\\d+ ${dir}`));
  const other = (() => {
    try {
      stateIo(dir, dir, "read", () => {
        throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
      });
    } catch (x) {
      return x;
    }
  })();
  assert.ok(other instanceof FmcError && other.code === "STATE_IO" && other.message.includes("ENOSPC"));
  // a state directory that is a file stays LOCK_IO (test/unit/lock.test.ts); a directory of root's is refused up front
  const file = join(dir, "plain-file");
  writeFileSync(file, "");
  assert.throws(() => acquireLock(file), (x) => x instanceof FmcError && x.code === "LOCK_IO");
  const who = statePermissionError(dir, join(dir, "x.lock"), "create");
  assert.match(who.message, /^cannot create .*x\.lock \(its directory is owned by (root|uid \d+)/, "a file that can't be created: its directory's owner");
});
