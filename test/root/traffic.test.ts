// The seed's traffic path end to end on the lab, with real daemons: from the internet
// namespace through vps1 (WireGuard, nftables), firewall1 (routing, ACLs, port forwards),
// the edge pair (HAProxy terminating TLS, Keepalived) and the load balancers to the lab's
// stand-in backends; internal DNS on bind9; VIP failovers under load. Needs root, like CI.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clearStaleLab, fmc, ROOT, sleep, until } from "../helpers.js";
import { INTERNET_NS, labExec, labPowerOff, labPowerOn, LABEL } from "../../src/lab/lab.js";
import { longestWindow, startProbe, type ProbeResult } from "../../src/lab/probe.js";
import { context } from "../../src/project.js";

const PUBLIC = "203.0.113.10";
const CLIENT = "203.0.113.1";
const API_VIP = "10.31.5.10";
const EDGE_VIP = "10.31.2.10";
let dir = "";
let spec = "";
const run = (...args: string[]) => fmc([...args], dir);
const inHost = (host: string, ...args: string[]) => labExec(host, args, { timeoutMs: 30_000 });
const holderOf = (vip: string, hosts: string[]) => hosts.find((h) => spawnSync("ip", ["-n", `${LABEL}-${h}`, "-o", "-4", "addr", "show"], { encoding: "utf8" }).stdout.includes(` ${vip}/`));
const ca = () => join(dir, ".fmc/lab/ca.pem");
/** The request a user makes from the internet: the public name, resolved to vps1's public address. */
const publicRequest = (name = "example.com") => ["--cacert", ca(), "--resolve", `${name}:443:${PUBLIC}`, `https://${name}/`];
const fromInternet = (...curl: string[]) => labExec(INTERNET_NS, ["curl", "-sS", "-m", "5", ...curl], { timeoutMs: 10_000 });
/** Is a TCP port open from a host? (bash's /dev/tcp, with a time limit) */
const tcpOpen = (from: string, address: string, port: number) => inHost(from, "timeout", "2", "bash", "-c", `echo > /dev/tcp/${address}/${port}`).status === 0;

const PREFIX = join(tmpdir(), "fmc-traffic-e2e-");
let ours = false;

before(async () => {
  dir = mkdtempSync(PREFIX);
  spec = join(dir, "cluster.yaml");
  copyFileSync(join(ROOT, "test/fixtures/lab-traffic.yaml"), spec);
  clearStaleLab(dir);
  const up = run("lab", "up");
  assert.equal(up.status, 0, up.stderr);
  ours = true;
  // the first plan shows the tunnel's configs with their keys masked
  const p = run("plan");
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /<secret:wireguard-psk>/);
  assert.ok(!p.stdout.includes(context({ file: spec }).ctx.secrets.get("wireguard-psk")), "no key in the plan");
  const a = run("apply", "--yes");
  assert.equal(a.status, 0, `${a.stdout}\n${a.stderr}`);
});

after(() => {
  const down = ours ? run("lab", "down", "--force") : { status: 0, stderr: "" };
  rmSync(dir, { recursive: true, force: true });
  assert.equal(down.status, 0, down.stderr);
});

test("after apply, a re-plan changes nothing (exit 0)", () => {
  const p = run("plan", "--detailed-exitcode");
  assert.equal(p.status, 0, p.stdout);
  assert.match(p.stdout, /No changes/);
  assert.match(p.stdout, /lab stand-in: wireguard\.forwardFrom also allows 203\.0\.113\.1\/32/);
});

test("from the internet, the public name answers over verified TLS through the whole path, from more than one backend, with the client's address", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) {
    const r = fromInternet(...publicRequest(i % 2 ? "www.example.com" : "example.com"));
    assert.equal(r.status, 0, r.stderr);
    const backend = /^lab stand-in backend (worker[12])$/m.exec(r.stdout)?.[1];
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
  const r = run("lab", "exec", "internet", "--", "curl", "-sS", "-m", "5", ...publicRequest());
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^lab stand-in backend worker[12]$/m);
  const fail = run("lab", "exec", "worker1", "--", "sh", "-c", "hostname; exit 7");
  assert.equal(fail.status, 7);
  assert.equal(fail.stdout.trim(), "worker1");
  const none = run("lab", "exec", "nosuch", "--", "true");
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no lab host nosuch/);
});

test("the internet reaches nothing private, and a source outside wireguard.forwardFrom is not forwarded", () => {
  const r = fromInternet("http://10.31.5.10/");
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
  assert.equal(tcpOpen("edge1", "10.31.4.21", 22), false, "edge1 (dmz) -> master1:22 must be dropped");
  assert.equal(tcpOpen("lb1", "10.31.4.24", 30080), true, "lb1 (lb) -> worker1:30080 is allowed");
  assert.equal(tcpOpen("edge1", API_VIP, 80), true, "edge (dmz) -> api VIP:80 is allowed");
  assert.equal(tcpOpen("edge1", "10.31.4.24", 30080), false, "edge (dmz) -> worker1:30080 directly is not");
});

test("DNS: every host resolves every host name and the VIP names, forward and reverse", () => {
  const names = ["master1", "worker1", "worker2", "ns1", "lb1", "lb2", "edge1", "edge2", "firewall1", "vps1", "api", "edge", "ingress"];
  for (const h of ["master1", "worker2", "lb1", "edge2", "firewall1", "ns1"]) {
    // getaddrinfo, as applications resolve; the short names through the search domain
    const r = inHost(h, "bash", "-c", `for n in ${names.join(" ")}; do getent ahosts $n.traffic.lan >/dev/null || echo "missing $n"; getent ahosts $n >/dev/null || echo "no search $n"; done`);
    assert.equal(r.stdout.trim(), "", `${h}: ${r.stdout}`);
  }
  assert.equal(inHost("worker1", "getent", "hosts", "10.31.5.11").stdout.trim().split(/\s+/)[1], "lb1.traffic.lan", "reverse");
  assert.equal(inHost("worker1", "getent", "ahostsv4", "api").stdout.split(/\s+/)[0], API_VIP);
  assert.equal(inHost("edge1", "getent", "hosts", API_VIP).stdout.trim().split(/\s+/)[1], "api.traffic.lan", "a VIP's reverse name");
});

/** Fails a probe run whose longest outage exceeds `ms` (loose: the machine is noisy). */
function assertWindow(t: { diagnostic(s: string): void }, what: string, r: ProbeResult, ms: number): void {
  t.diagnostic(`${what}: ${r.requests} requests, ${r.failed} failed, longest window ${longestWindow(r)} ms`);
  assert.ok(r.requests > 20, `${what}: the probe ran (${r.requests} requests)`);
  assert.ok(longestWindow(r) < ms, `${what}: longest window ${longestWindow(r)} ms`);
}

test("failover under load: HAProxy killed on the API VIP's holder", async (t) => {
  const holder = await until("a holder of the API VIP", () => holderOf(API_VIP, ["lb1", "lb2"]));
  const probe = startProbe({ from: "edge1", curl: [`http://${API_VIP}/`] });
  await sleep(1000);
  assert.equal(inHost(holder, "pkill", "-KILL", "-x", "haproxy").status, 0);
  await sleep(2500);
  const r = await probe.stop();
  assertWindow(t, `HAProxy SIGKILL on ${holder}`, r, 1500);
  // either the VIP moved, or systemd had HAProxy back before the second failed check
  t.diagnostic(`the VIP is on ${holderOf(API_VIP, ["lb1", "lb2"])} now`);
  assert.equal(run("apply", "--yes").status, 0, "apply brings HAProxy back");
});

test("failover under load: Keepalived killed on the edge VIP's holder, end to end from the internet", async (t) => {
  const holder = await until("a holder of the edge VIP", () => holderOf(EDGE_VIP, ["edge1", "edge2"]));
  const probe = startProbe({ from: INTERNET_NS, curl: publicRequest() });
  await sleep(1000);
  assert.equal(inHost(holder, "pkill", "-KILL", "-x", "keepalived").status, 0);
  await sleep(2500);
  const r = await probe.stop();
  assertWindow(t, `Keepalived SIGKILL on ${holder}`, r, 1500);
  assert.equal(run("apply", "--yes").status, 0, "apply brings Keepalived back");
});

test("failover under load: the API VIP's holder powered off, then back without taking the VIP again", async (t) => {
  const holder = await until("a holder of the API VIP", () => holderOf(API_VIP, ["lb1", "lb2"]));
  const other = holder === "lb1" ? "lb2" : "lb1";
  const probe = startProbe({ from: "edge2", curl: [`http://${API_VIP}/`] });
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
  assert.equal(holderOf(API_VIP, ["lb1", "lb2"]), other, "the VIP stayed where it went");
});

test("no request is lost while HAProxy reloads a changed config under load", async (t) => {
  const text = readFileSync(spec, "utf8");
  writeFileSync(spec, text.replace("check: { interMs: 500, fall: 2, rise: 1 }", "check: { interMs: 600, fall: 2, rise: 1 }"));
  const probe = startProbe({ from: "edge1", curl: [`http://${API_VIP}/`], everyMs: 5 });
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
  const { ctx } = context({ file: spec });
  const secrets = ["wireguard-vps1", "wireguard-firewall1", "wireguard-psk"].map((k) => ctx.secrets.get(k));
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
  assert.equal(peers.length, 2, "vps1 has the LAN peer and the laptop");
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
  const text = readFileSync(spec, "utf8");
  // SSH to the firewall only from the VPS: this machine's LAN addresses are cut off
  writeFileSync(spec, text.replace("  host: firewall1\n  portForwards:", "  host: firewall1\n  management: [vps1]\n  portForwards:"));
  try {
    const a = run("apply", "--yes", "--phase", "firewall", "--confirm-timeout", "10");
    assert.equal(a.status, 1, a.stdout);
    assert.match(a.stderr, /revert/i);
    assert.match(a.stderr, /firewall1/);
    // the old rules are back: SSH works and the plan still wants the change
    const p = run("plan", "--phase", "firewall", "--detailed-exitcode");
    assert.equal(p.status, 2, p.stderr);
  } finally {
    writeFileSync(spec, text);
  }
  // the host still has the refused candidate file: apply puts the spec's back, then all is clean
  assert.equal(run("apply", "--yes", "--phase", "firewall").status, 0);
  assert.equal(run("plan", "--detailed-exitcode").status, 0);
});
