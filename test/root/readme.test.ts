// The README, run verbatim as a new user would (issue 13): a fresh copy of the checkout (the
// files git knows, as they are in the work tree), the README's first command (`npm ci && npx
// fmc render -o out`), then every command of the README's lab walk-through exactly as the
// README prints it, as root and without sudo. The curl's answer must look like the one the
// README shows, and a login command that `lab up` printed must work. One lab for the file,
// torn down even on failure. Needs root, and npm's cache (CI's own npm ci fills it).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { clearStaleLab, ROOT } from "../helpers.js";

const README = readFileSync(join(ROOT, "README.md"), "utf8");
const PREFIX = join(tmpdir(), "fmc-readme-e2e-");

/** The ```sh block that follows the first line containing `marker`, as commands: continued lines joined. */
function shBlockAfter(marker: string): string[] {
  const at = README.indexOf(marker);
  assert.ok(at >= 0, `the README has "${marker}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(README.slice(at));
  assert.ok(m, `a sh block follows "${marker}"`);
  return m[1]!.split(/(?<!\\)\n/).filter((l) => l.trim() !== "" && !l.trim().startsWith("#"));
}

/** The plain ``` block after `marker`: an answer the README shows. */
function answerAfter(marker: string): string {
  const at = README.indexOf(marker);
  assert.ok(at >= 0, `the README has "${marker}"`);
  return /```\n([\s\S]*?)```/.exec(README.slice(at))![1]!;
}

let dir = "";
let ours = false;
const results = new Map<string, { status: number | null; stdout: string; stderr: string; ms: number }>();
/** A README line, run by bash exactly as written, in the fresh checkout. */
function runLine(line: string, input?: string, timeoutMs = 20 * 60_000) {
  const t0 = Date.now();
  const r = spawnSync("bash", ["-c", line], { cwd: dir, input, encoding: "utf8", timeout: timeoutMs, env: { ...process.env, NO_COLOR: "1" }, maxBuffer: 64 << 20 });
  const out = { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
  results.set(line, out);
  return out;
}
const byCommand = (words: string) => [...results].find(([line]) => line.includes(words))?.[1];

/** The checkout as git knows it (tracked and new files, as they are now), without its build output. */
function copyCheckout(to: string): void {
  const files = spawnSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: ROOT, encoding: "utf8" }).stdout.split("\0").filter(Boolean);
  assert.ok(files.length > 100, "git lists the checkout's files");
  for (const f of files) {
    const from = join(ROOT, f);
    if (!existsSync(from) || lstatSync(from).isDirectory()) continue; // deleted in the work tree, or a submodule
    mkdirSync(dirname(join(to, f)), { recursive: true });
    copyFileSync(from, join(to, f));
  }
}

const SETUP = shBlockAfter("## The two commands").filter((l) => l.includes("npx fmc"));
const WALKTHROUGH = shBlockAfter("Try it all on this machine first");

before(() => {
  dir = mkdtempSync(PREFIX);
  copyCheckout(dir);
  clearStaleLab(dir);
});

after(() => {
  // the walk-through ends with lab down; when it stopped early, the lab goes here
  const down = ours ? spawnSync(process.execPath, [join(dir, "bin/fmc.js"), "lab", "down", "--force"], { cwd: dir, encoding: "utf8" }) : { status: 0, stderr: "" };
  const timings = [...results].map(([line, r]) => `${line.split(/\s+#/)[0]!.trim().slice(0, 60)} ${(r.ms / 1000).toFixed(1)} s`);
  if (timings.length) process.stdout.write(`# README commands: ${timings.join("; ")}\n`);
  rmSync(dir, { recursive: true, force: true });
  assert.equal(down.status, 0, down.stderr);
});

test("the README's commands need no sudo and use fmc through npx", () => {
  const blocks = [...README.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length > 5);
  for (const b of blocks) for (const line of b.split("\n")) assert.doesNotMatch(line, /^\s*sudo\b|&&\s*sudo\b/, `a README command runs sudo: ${line}`);
  assert.equal(SETUP.length, 1, "one set-up command that runs fmc");
  assert.ok(WALKTHROUGH.length >= 5 && WALKTHROUGH.every((l) => l.startsWith("npx fmc ")), WALKTHROUGH.join("\n"));
  assert.match(WALKTHROUGH[0]!, /^npx fmc lab up\b/);
  assert.match(WALKTHROUGH.at(-1)!, /^npx fmc lab down\b/);
});

test("a fresh checkout: npm ci builds fmc and npx fmc render writes the seed's files", () => {
  const r = runLine(SETUP[0]!);
  assert.equal(r.status, 0, r.stdout.slice(-3000) + r.stderr.slice(-3000));
  assert.ok(existsSync(join(dir, "dist/cli/fmc.cjs")), "npm ci's prepare bundled the command line");
  // every file the manifest lists is there, among them the seed's load balancer and topology picture
  const manifest = JSON.parse(readFileSync(join(dir, "out/.fmc-render"), "utf8")) as { files: string[] };
  assert.ok(manifest.files.length > 50, `${manifest.files.length} files rendered`);
  for (const f of manifest.files) assert.ok(existsSync(join(dir, "out", f)), f);
  for (const f of ["haproxy/loadbalancer1/haproxy.cfg", "topology.svg"]) assert.ok(manifest.files.includes(f), f);
  assert.match(r.stdout, /\d+ files \(\d+ written, 0 unchanged\)/);
});

test("the lab walk-through, line by line: every command exits 0", { timeout: 40 * 60_000 }, () => {
  assert.equal(existsSync(join(dir, "dist/cli/fmc.cjs")), true, "the set-up ran");
  for (const line of WALKTHROUGH) {
    if (/^npx fmc lab down\b/.test(line)) checkFirstBoot();
    if (/^npx fmc lab up\b/.test(line)) ours = true;
    const r = runLine(line);
    assert.equal(r.status, 0, `${line}\nexit ${r.status}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
    if (/^npx fmc lab down\b/.test(line)) ours = false;
  }
});

/**
 * While the walk-through's lab is up (issue 20): the hosts lab up booted from their rendered
 * first-boot files kept what the real tools did, before and after a reboot, and the plan
 * stays empty after the reboots.
 */
function checkFirstBoot(): void {
  const up = byCommand("fmc lab up")!;
  const said = up.stdout + up.stderr;
  const ignitionHosts = [...said.matchAll(/^lab: (\S+): Ignition \(real, fetch \+ files stages\) provisioned its root/gm)].map((m) => m[1]!);
  const cloudInitHosts = [...said.matchAll(/^lab: (\S+): cloud-init status: done$/gm)].map((m) => m[1]!);
  // the seed: the three servers from Ignition (the workers and storage1 have data disks), the six cloud-init containers
  assert.deepEqual(ignitionHosts.sort(), ["master1", "master2", "master3"], said);
  assert.deepEqual(cloudInitHosts.sort(), ["firewall1", "freeipa1", "loadbalancer1", "loadbalancer2", "traefik1", "traefik2"], said);
  const fmcIn = (...args: string[]) => spawnSync(process.execPath, [join(dir, "bin/fmc.js"), ...args], { cwd: dir, encoding: "utf8", timeout: 10 * 60_000 });
  const check = (when: string) => {
    for (const h of ignitionHosts) {
      const r = fmcIn("lab", "exec", h, "--", "cat", "/etc/.ignition-result.json");
      assert.equal(r.status, 0, `${when}: ${h}: ${r.stderr}`);
      assert.equal((JSON.parse(r.stdout) as { userConfigProvided: boolean }).userConfigProvided, true, `${when}: ${h}`);
    }
    for (const h of cloudInitHosts) {
      const r = fmcIn("lab", "exec", h, "--", "cloud-init", "status", "--wait", "--long");
      assert.equal(r.status, 0, `${when}: ${h}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /^status: done$/m, `${when}: ${h}`);
      assert.doesNotMatch(r.stdout, /^errors:\s*\n\s+-/m, `${when}: ${h}`);
    }
  };
  check("after apply");
  for (const h of ["master1", "loadbalancer1"]) {
    const r = fmcIn("lab", "reboot", h);
    assert.equal(r.status, 0, `lab reboot ${h}: ${r.stderr}`);
  }
  check("after the reboots");
  const again = fmcIn("plan", "--detailed-exitcode");
  assert.equal(again.status, 0, `the plan after the reboots: ${again.stdout.slice(-3000)}${again.stderr.slice(-2000)}`);
}

test("lab up listed every host with a login command, and the one printed for loadbalancer1 works", () => {
  const up = byCommand("fmc lab up");
  assert.ok(up, "lab up ran");
  const logins = [...up.stdout.matchAll(/^\s+(\S+)\s+\d+\.\d+\.\d+\.\d+\s+(fmc lab ssh \S+)$/gm)];
  assert.ok(logins.length >= 15, up.stdout);
  const lb = logins.find((m) => m[1] === "loadbalancer1");
  assert.ok(lb, "loadbalancer1 is listed");
  // (checked while the lab was up: the walk-through's own line that logs in, see below)
  assert.ok(WALKTHROUGH.some((l) => l.startsWith(`npx ${lb[2]!}`)), `the README's walk-through logs in with the command lab up prints (${lb[2]})`);
  const ssh = byCommand(`npx ${lb[2]!}`)!;
  assert.match(ssh.stdout, /^active\nactive\n$/);
});

test("the closing check answers as the README shows: a stand-in backend, and the internet client's own address", () => {
  const curl = byCommand("lab exec internet -- curl");
  assert.ok(curl, "the curl ran");
  const shown = answerAfter("The `curl` runs in the lab's `internet` namespace and answers");
  // any agent may answer: the README shows one of them
  const pattern = new RegExp(`^${shown.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/worker\d+/, "worker\\d+")}$`);
  assert.match(curl.stdout, pattern);
  const getent = byCommand("getent hosts api.microcloud.lan");
  assert.match(getent!.stdout, /^10\.17\.5\.10\s+api\.microcloud\.lan/m, "the API name resolves to the seed's API VIP");
  const plan = byCommand("fmc plan --detailed-exitcode");
  assert.match(plan!.stdout, /No changes/);
});

test("lab down, the walk-through's last line, left no lab behind", () => {
  const down = byCommand("fmc lab down");
  assert.ok(down && down.status === 0, "lab down ran");
  const st = spawnSync(process.execPath, [join(dir, "bin/fmc.js"), "lab", "status"], { cwd: dir, encoding: "utf8" });
  assert.match(st.stdout + st.stderr, /no lab is up/i);
  assert.equal(spawnSync("pgrep", ["-f", "qemu-system-x86_64 -name fmclab-"]).status, 1, "no QEMU left");
});
