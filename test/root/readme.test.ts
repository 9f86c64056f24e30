// The README, run verbatim as a new user would (issue 13): a fresh copy of the checkout (the
// files git knows, as they are in the work tree), the README's first command (`npm ci && npx
// fmc render -o out`), then every command of the README's lab walk-through exactly as the
// README prints it, as root and without sudo. The curl's answer must look like the one the
// README shows, and a login command that `lab up` printed must work. Then, on the lab the
// walk-through applied (was traffic.test.ts, which built a lab of its own): the seed's traffic
// path end to end with real daemons, from the internet namespace through vps1 (WireGuard,
// nftables), firewall1 (routing, ACLs, port forwards), the edge pair and the load balancers to
// the lab's stand-in backends; internal DNS; VIP failovers under load; the README's last
// line, lab down, runs last. One lab for the file, torn down even on failure. Needs root, and
// npm's cache (CI's own npm ci fills it).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { clearStaleLab, fmc, ROOT, sleep, until } from "../helpers.js";
import { INTERNET_NS, labExec, labPowerOff, labPowerOn, LABEL } from "../../src/lab/lab.js";
import { longestWindow, startProbe, type ProbeResult } from "../../src/lab/probe.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { context } from "../../src/project.js";

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

/** Set once the walk-through's lines before lab down all exited 0: the traffic tests need that lab. */
let walked = false;

test("the lab walk-through, line by line: every command exits 0", { timeout: 40 * 60_000 }, () => {
  assert.equal(existsSync(join(dir, "dist/cli/fmc.cjs")), true, "the set-up ran");
  // all but the last line (lab down): it runs at the end of this file, after the traffic tests
  for (const line of WALKTHROUGH.slice(0, -1)) {
    if (/^npx fmc lab up\b/.test(line)) ours = true;
    const r = runLine(line);
    assert.equal(r.status, 0, `${line}\nexit ${r.status}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  }
  checkFirstBoot();
  walked = true;
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
  const ignitionVms = [...said.matchAll(/^lab: (\S+): Ignition \(real, every stage, config through fw_cfg\) provisioned it at first boot/gm)].map((m) => m[1]!);
  const cloudInitHosts = [...said.matchAll(/^lab: (\S+): cloud-init status: done$/gm)].map((m) => m[1]!);
  // the seed: the three servers and the three workers (their data disks on loop devices)
  // from Ignition in containers, storage1 (a VM: its LVM data disk) from Ignition at its
  // first boot, the six cloud-init containers and postgresql1, a cloud-init VM
  assert.deepEqual(ignitionHosts.sort(), ["master1", "master2", "master3", "worker1", "worker2", "worker3"], said);
  assert.deepEqual(ignitionVms, ["storage1"], said);
  assert.deepEqual(cloudInitHosts.sort(), ["firewall1", "freeipa1", "loadbalancer1", "loadbalancer2", "postgresql1", "traefik1", "traefik2"], said);
  assert.match(said, /^lab: postgresql1: SSH host key from its console/m, "a cloud-init VM's host key is read from its console");
  const fmcIn = (...args: string[]) => spawnSync(process.execPath, [join(dir, "bin/fmc.js"), ...args], { cwd: dir, encoding: "utf8", timeout: 10 * 60_000 });
  const check = (when: string) => {
    for (const h of [...ignitionHosts, ...ignitionVms]) {
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
  // storage1's first boot made its volume group on the data disk (fmc-lvm.service, which
  // Ignition wrote and enabled) before the storage phase ever ran
  const lvm = fmcIn("lab", "exec", "storage1", "--", "sh", "-c", "journalctl -b 0 -u fmc-lvm.service -o cat --no-pager | head -5; pvs --noheadings -o pv_name,vg_name");
  assert.equal(lvm.status, 0, lvm.stderr);
  assert.match(lvm.stdout, /Physical volume "\/dev\/vdb" successfully created/, `fmc-lvm.service made the volume group at first boot: ${lvm.stdout}`);
  assert.match(lvm.stdout, /\/dev\/vdb\s+data$/m, lvm.stdout);
  const longhornDisk = (when: string) => {
    for (const w of ["worker1", "worker2", "worker3"]) {
      const r = fmcIn("lab", "exec", w, "--", "findmnt", "-n", "-o", "SOURCE,FSTYPE", "/mnt/longhorn-disk");
      assert.equal(r.stdout.trim().split(/\s+/).join(" "), "/dev/vdb ext4", `${when}: ${w}'s Longhorn disk is mounted: ${r.stdout}${r.stderr}`);
    }
  };
  longhornDisk("after apply");
  // formatted by the worker's first boot (fmc-longhorn-disk.service, enabled by Ignition's
  // presets), before apply ever ran: its journal from lab up's boot says mkfs made it
  const mkfs = fmcIn("lab", "exec", "worker2", "--", "journalctl", "-u", "fmc-longhorn-disk.service", "-o", "cat", "--no-pager");
  assert.match(mkfs.stdout, /Creating filesystem with \d+ 4k blocks/, mkfs.stdout + mkfs.stderr);
  for (const h of ["master1", "worker1", "loadbalancer1"]) {
    const r = fmcIn("lab", "reboot", h);
    assert.equal(r.status, 0, `lab reboot ${h}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^${h} rebooted: SSH answers again after \\d+\\.\\d s$`, "m"));
  }
  check("after the reboots");
  longhornDisk("after the reboots");
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

// ---- the traffic path, on the lab the walk-through applied ------------------------------

const PUBLIC = "203.0.113.10";
const CLIENT = "203.0.113.1";
const API_VIP = "10.17.5.10";
const EDGE_VIP = "10.17.2.10";
const LBS = ["loadbalancer1", "loadbalancer2"];
const EDGES = ["traefik1", "traefik2"];
/** The seed, with health checks fast enough to time failovers in seconds (the traffic fixture's). */
const FAST_CHECKS = "loadBalancer:\n  check: { interMs: 500, fall: 2, rise: 1 }\n";
const run = (...args: string[]) => fmc([...args], dir);
const spec = () => join(dir, "cluster.yaml");
const inHost = (host: string, ...args: string[]) => labExec(host, args, { timeoutMs: 30_000 });
const holderOf = (vip: string, hosts: string[]) => hosts.find((h) => spawnSync("ip", ["-n", `${LABEL}-${h}`, "-o", "-4", "addr", "show"], { encoding: "utf8" }).stdout.includes(` ${vip}/`));
const ca = () => join(dir, ".fmc/lab/ca.pem");
/** The request a user makes from the internet: the public name, resolved to vps1's public address. */
const publicRequest = (name = "example.com") => ["--cacert", ca(), "--resolve", `${name}:443:${PUBLIC}`, `https://${name}/`];
const fromInternet = (...curl: string[]) => labExec(INTERNET_NS, ["curl", "-sS", "-m", "5", ...curl], { timeoutMs: 10_000 });
/** Is a TCP port open from a host? (bash's /dev/tcp, with a time limit) */
const tcpOpen = (from: string, address: string, port: number) => inHost(from, "timeout", "2", "bash", "-c", `echo > /dev/tcp/${address}/${port}`).status === 0;
/** The traffic tests need the walk-through's lab, applied. */
const needsLab = () => assert.ok(walked, "the walk-through's lab is up and applied");

test("the seed as cluster.yaml with fast health checks: apply changes the load balancers' checks only, the first plan masks the tunnel's keys, a re-plan changes nothing", () => {
  needsLab();
  writeFileSync(spec(), `${SEED_YAML}\n${FAST_CHECKS}`);
  const p = run("plan");
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /haproxy\.cfg/);
  assert.doesNotMatch(p.stdout, /wg0\.conf/, "the tunnel is as the walk-through left it");
  const a = run("apply", "--yes");
  assert.equal(a.status, 0, `${a.stdout}\n${a.stderr}`);
  const again = run("plan", "--detailed-exitcode");
  assert.equal(again.status, 0, again.stdout);
  assert.match(again.stdout, /No changes/);
  assert.match(again.stdout, /lab stand-in: wireguard\.forwardFrom also allows 203\.0\.113\.1\/32/);
  // the tunnel's config, as plan shows it when it must be written whole: keys masked. The
  // file is put back by hand, not by apply: re-applying it restarts the tunnel, and the LAN
  // peer may take up to WireGuard's rekey time (2 min) to shake hands again
  assert.equal(inHost("vps1", "sh", "-c", "cp -p /etc/wireguard/wg0.conf /root/wg0.conf.kept && echo '# emptied by a test' > /etc/wireguard/wg0.conf").status, 0);
  let masked: ReturnType<typeof run>;
  try {
    masked = run("plan");
  } finally {
    assert.equal(inHost("vps1", "mv", "/root/wg0.conf.kept", "/etc/wireguard/wg0.conf").status, 0);
  }
  assert.match(masked.stdout, /<secret:wireguard-psk>/);
  assert.ok(!masked.stdout.includes(context({ file: spec() }).ctx.secrets.get("wireguard-psk")), "no key in the plan");
  assert.equal(run("plan", "--detailed-exitcode").status, 0, "the tunnel's config is as it was");
});

test("from the internet, the public name answers over verified TLS through the whole path, from more than one backend, with the client's address", () => {
  needsLab();
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) {
    const r = fromInternet(...publicRequest(i % 2 ? "www.example.com" : "example.com"));
    assert.equal(r.status, 0, r.stderr);
    const backend = /^lab stand-in backend (worker\d)$/m.exec(r.stdout)?.[1];
    assert.ok(backend, r.stdout);
    seen.add(backend);
    // client addresses survive the path: no masquerade on the way in
    assert.match(r.stdout, new RegExp(`^x-forwarded-for: ${CLIENT.replace(/\./g, "\\.")}$`, "m"));
  }
  assert.ok(seen.size > 1, `answers came from ${[...seen].join(", ")}`);
  // plain HTTP is redirected to HTTPS
  const http = labExec(INTERNET_NS, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-m", "5", "--resolve", `example.com:80:${PUBLIC}`, "http://example.com/"]);
  assert.match(http.stdout, /^30[18] https:\/\/example\.com\//);
});

test("fmc lab exec runs a command on a lab host or in the internet namespace, with its output and exit code", () => {
  needsLab();
  const r = run("lab", "exec", "internet", "--", "curl", "-sS", "-m", "5", ...publicRequest());
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^lab stand-in backend worker\d$/m);
  const fail = run("lab", "exec", "worker1", "--", "sh", "-c", "hostname; exit 7");
  assert.equal(fail.status, 7);
  assert.equal(fail.stdout.trim(), "worker1");
  const none = run("lab", "exec", "nosuch", "--", "true");
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no lab host nosuch/);
});

test("the internet reaches nothing private, and a source outside wireguard.forwardFrom is not forwarded", () => {
  needsLab();
  const r = fromInternet(`http://${API_VIP}/`);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /Network is unreachable|Couldn't connect|Failed to connect/);
  // a second client on the public /24, not in forwardFrom (in the lab only the first is)
  assert.equal(spawnSync("ip", ["-n", INTERNET_NS, "addr", "add", "203.0.113.77/24", "dev", "fmclab-pub"]).status, 0);
  try {
    const other = labExec(INTERNET_NS, ["curl", "-sS", "--interface", "203.0.113.77", "--connect-timeout", "2", "-m", "3", ...publicRequest()]);
    assert.notEqual(other.status, 0, other.stdout);
  } finally {
    spawnSync("ip", ["-n", INTERNET_NS, "addr", "del", "203.0.113.77/24", "dev", "fmclab-pub"]);
  }
});

test("firewall: a flow the spec does not allow is dropped between LAN subnets, an allowed one passes", () => {
  needsLab();
  assert.equal(tcpOpen("traefik1", "10.17.4.21", 22), false, "traefik1 (dmz) -> master1:22 must be dropped");
  assert.equal(tcpOpen("loadbalancer1", "10.17.4.24", 30080), true, "loadbalancer1 (lb) -> worker1:30080 is allowed");
  assert.equal(tcpOpen("traefik1", API_VIP, 80), true, "edge (dmz) -> api VIP:80 is allowed");
  assert.equal(tcpOpen("traefik1", "10.17.4.24", 30080), false, "edge (dmz) -> worker1:30080 directly is not");
});

test("DNS: every host resolves every host name and the VIP names, forward and reverse", () => {
  needsLab();
  const names = ["master1", "master3", "worker1", "worker3", "storage1", "postgresql1", "freeipa1", ...LBS, ...EDGES, "firewall1", "vps1", "api", "edge", "ingress"];
  for (const h of ["master1", "worker2", "loadbalancer1", "traefik2", "firewall1", "freeipa1"]) {
    // getaddrinfo, as applications resolve; the short names through the search domain
    const r = inHost(h, "bash", "-c", `for n in ${names.join(" ")}; do getent ahosts $n.microcloud.lan >/dev/null || echo "missing $n"; getent ahosts $n >/dev/null || echo "no search $n"; done`);
    assert.equal(r.stdout.trim(), "", `${h}: ${r.stdout}`);
  }
  assert.equal(inHost("worker1", "getent", "hosts", "10.17.5.11").stdout.trim().split(/\s+/)[1], "loadbalancer1.microcloud.lan", "reverse");
  assert.equal(inHost("worker1", "getent", "ahostsv4", "api").stdout.split(/\s+/)[0], API_VIP);
  assert.equal(inHost("traefik1", "getent", "hosts", API_VIP).stdout.trim().split(/\s+/)[1], "api.microcloud.lan", "a VIP's reverse name");
});

/** Fails a probe run whose longest outage exceeds `ms` (loose: the machine is noisy). */
function assertWindow(t: { diagnostic(s: string): void }, what: string, r: ProbeResult, ms: number): void {
  t.diagnostic(`${what}: ${r.requests} requests, ${r.failed} failed, longest window ${longestWindow(r)} ms`);
  assert.ok(r.requests > 20, `${what}: the probe ran (${r.requests} requests)`);
  assert.ok(longestWindow(r) < ms, `${what}: longest window ${longestWindow(r)} ms`);
}

test("failover under load: HAProxy killed on the API VIP's holder", async (t) => {
  needsLab();
  const holder = await until("a holder of the API VIP", () => holderOf(API_VIP, LBS));
  const probe = startProbe({ from: "traefik1", curl: [`http://${API_VIP}/`] });
  await sleep(1000);
  assert.equal(inHost(holder, "pkill", "-KILL", "-x", "haproxy").status, 0);
  await sleep(2500);
  const r = await probe.stop();
  assertWindow(t, `HAProxy SIGKILL on ${holder}`, r, 1500);
  // either the VIP moved, or systemd had HAProxy back before the second failed check
  t.diagnostic(`the VIP is on ${holderOf(API_VIP, LBS)} now`);
  assert.equal(run("apply", "--yes").status, 0, "apply brings HAProxy back");
});

test("failover under load: Keepalived killed on the edge VIP's holder, end to end from the internet", async (t) => {
  needsLab();
  const holder = await until("a holder of the edge VIP", () => holderOf(EDGE_VIP, EDGES));
  const probe = startProbe({ from: INTERNET_NS, curl: publicRequest() });
  await sleep(1000);
  assert.equal(inHost(holder, "pkill", "-KILL", "-x", "keepalived").status, 0);
  await sleep(2500);
  const r = await probe.stop();
  assertWindow(t, `Keepalived SIGKILL on ${holder}`, r, 1500);
  assert.equal(run("apply", "--yes").status, 0, "apply brings Keepalived back");
});

test("failover under load: the API VIP's holder powered off, then back without taking the VIP again", async (t) => {
  needsLab();
  const holder = await until("a holder of the API VIP", () => holderOf(API_VIP, LBS));
  const other = LBS.find((h) => h !== holder)!;
  const probe = startProbe({ from: "traefik2", curl: [`http://${API_VIP}/`] });
  await sleep(1000);
  await labPowerOff(holder);
  await sleep(2500);
  assert.equal(holderOf(API_VIP, [other]), other);
  await labPowerOn(holder);
  // its Keepalived starts as a backup and stays one: no second outage
  await sleep(4000);
  const r = await probe.stop();
  assertWindow(t, `${holder} powered off and back`, r, 1500);
  assert.equal(r.windows.length <= 1, true, `one outage at most: ${JSON.stringify(r.windows)}`);
  assert.equal(holderOf(API_VIP, LBS), other, "the VIP stayed where it went");
});

test("no request is lost while HAProxy reloads a changed config under load", async (t) => {
  needsLab();
  const text = readFileSync(spec(), "utf8");
  writeFileSync(spec(), text.replace("check: { interMs: 500, fall: 2, rise: 1 }", "check: { interMs: 600, fall: 2, rise: 1 }"));
  const probe = startProbe({ from: "traefik1", curl: [`http://${API_VIP}/`], everyMs: 5 });
  await sleep(500);
  const a = run("apply", "--yes", "--phase", "loadbalancer");
  await sleep(1000);
  const r = await probe.stop();
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stderr, /reload \(configuration changed\) haproxy\.service/);
  t.diagnostic(`reload under load: ${r.requests} requests, ${r.failed} failed`);
  assert.equal(r.failed, 0);
});

test("secrets never appear on a command line while applying (ps), nor in its output", async () => {
  needsLab();
  const { ctx } = context({ file: spec() });
  const secrets = (["wireguard-key/vps1", "wireguard-key/firewall1", "wireguard-psk"] as const).map((k) => ctx.secrets.get(k));
  // force work that carries keys: WireGuard and Keepalived configs rewritten
  for (const f of ["/etc/wireguard/wg0.conf", "/etc/keepalived/keepalived.conf"]) inHost("vps1", "sh", "-c", `[ -f ${f} ] && echo "# touched" >> ${f} || true`);
  const child = spawn(process.execPath, [join(ROOT, "bin/fmc.js"), "apply", "--yes"], { cwd: dir, env: { ...process.env, NO_COLOR: "1" } });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d));
  child.stderr.on("data", (d: Buffer) => (out += d));
  const done = new Promise<number | null>((r) => child.once("exit", r));
  let samples = 0;
  let running = true;
  void done.then(() => (running = false));
  while (running) {
    const ps = spawnSync("ps", ["-eo", "args"], { encoding: "utf8" }).stdout;
    samples++;
    for (const s of secrets) assert.ok(!ps.includes(s), "a secret was on a command line");
    await sleep(20);
  }
  assert.equal(await done, 0, out);
  assert.ok(samples > 5, `ps sampled ${samples} times`);
  for (const s of secrets) assert.ok(!out.includes(s), "a secret was in apply's output");
});

test("WireGuard: add-peer and rotate keep the site tunnel carrying traffic", async (t) => {
  needsLab();
  const peersBefore = inHost("vps1", "wg", "show", "wg0", "peers").stdout.trim().split("\n").filter(Boolean).length;
  const probe = startProbe({ from: INTERNET_NS, curl: publicRequest(), everyMs: 50 });
  await sleep(500);
  const add = run("wireguard", "add-peer", "laptop");
  assert.equal(add.status, 0, add.stderr);
  assert.match(add.stdout, /^\[Interface\]$/m);
  assert.match(add.stdout, /^PrivateKey = [A-Za-z0-9+/]{43}=$/m);
  assert.match(add.stdout, new RegExp(`^Endpoint = ${PUBLIC.replace(/\./g, "\\.")}:51820$`, "m"));
  await sleep(1000);
  const r = await probe.stop();
  t.diagnostic(`add-peer under load: ${r.requests} requests, ${r.failed} failed`);
  assert.equal(r.failed, 0, "adding a peer does not drop the site tunnel");
  const peers = inHost("vps1", "wg", "show", "wg0", "peers").stdout.trim().split("\n");
  assert.equal(peers.length, peersBefore + 1, "vps1 has the laptop beside the peers it had");
  // rotation: new keys at both ends; the tunnel comes back by itself
  const before = inHost("vps1", "wg", "show", "wg0", "public-key").stdout.trim();
  const probe2 = startProbe({ from: INTERNET_NS, curl: publicRequest(), everyMs: 50 });
  await sleep(500);
  const rot = run("wireguard", "rotate");
  assert.equal(rot.status, 0, rot.stderr);
  await sleep(3000);
  const r2 = await probe2.stop();
  t.diagnostic(`rotate: ${r2.requests} requests, ${r2.failed} failed, longest gap ${longestWindow(r2)} ms`);
  assert.notEqual(inHost("vps1", "wg", "show", "wg0", "public-key").stdout.trim(), before);
  assert.equal(fromInternet(...publicRequest()).status, 0, "the tunnel carries traffic after the rotation");
  assert.equal(run("plan", "--detailed-exitcode").status, 0, "and the plan is clean");
});

test("firewall: a rule set that cuts SSH is reverted automatically and reported", () => {
  needsLab();
  const text = readFileSync(spec(), "utf8");
  // SSH to the firewall only from the VPS: this machine's LAN addresses are cut off
  assert.match(text, /^ {2}management: \[any\]/m);
  writeFileSync(spec(), text.replace(/^ {2}management: \[any\]/m, "  management: [vps1]"));
  try {
    const a = run("apply", "--yes", "--phase", "firewall", "--confirm-timeout", "10");
    assert.equal(a.status, 1, a.stdout);
    assert.match(a.stderr, /revert/i);
    assert.match(a.stderr, /firewall1/);
    // the old rules are back: SSH works and the plan still wants the change
    const p = run("plan", "--phase", "firewall", "--detailed-exitcode");
    assert.equal(p.status, 2, p.stderr);
  } finally {
    writeFileSync(spec(), text);
  }
  // the host still has the refused candidate file: apply puts the spec's back, then all is clean
  assert.equal(run("apply", "--yes", "--phase", "firewall").status, 0);
  assert.equal(run("plan", "--detailed-exitcode").status, 0);
});

// ---- the walk-through's last line

test("lab down, the walk-through's last line, leaves no lab behind", () => {
  const line = WALKTHROUGH.at(-1)!;
  assert.match(line, /^npx fmc lab down\b/);
  const r = runLine(line);
  assert.equal(r.status, 0, `${line}\nexit ${r.status}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  ours = false;
  const st = spawnSync(process.execPath, [join(dir, "bin/fmc.js"), "lab", "status"], { cwd: dir, encoding: "utf8" });
  assert.match(st.stdout + st.stderr, /no lab is up/i);
  assert.equal(spawnSync("pgrep", ["-f", "qemu-system-x86_64 -name fmclab-"]).status, 1, "no QEMU left");
});
