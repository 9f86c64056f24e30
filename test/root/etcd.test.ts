// fmc's etcd commands and quorum arithmetic on a REAL 3-member etcd (Debian's etcd-server,
// laid out like K3s's embedded etcd: TLS with client-cert auth on 2379/2380, members named
// <node>-<8 hex>). Three network namespaces fmchelp-etcd-1..3 hang off a bridge in
// fmchelp-etcd-sw (10.250.9.0/24, no route anywhere else); the commands' shell text runs with
// curl inside them (ip netns exec … sh -c '<shell>'). Needs root.
// FMC_ETCD_CAPTURE=<dir> also writes the answers it gets into <dir> (test/fixtures/etcd/).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "../../src/hosts/command.js";
import type { ExecResult, Transport } from "../../src/hosts/transport.js";
import {
  etcdAccess,
  healthCommand,
  memberAddCommand,
  memberListCommand,
  memberRemoveCommand,
  parseAddedMember,
  parseHealth,
  parseMembers,
  parseRangeValue,
  probeCommand,
  quorumCheck,
  rangeCommand,
  readCluster,
  statusCommand,
  parseStatus,
  type EtcdAccess,
} from "../../src/k3s/etcd.js";
import { FmcError } from "../../src/errors.js";

const NS = [1, 2, 3].map((i) => `fmchelp-etcd-${i}`);
const SW = "fmchelp-etcd-sw";
const ip = (i: number) => `10.250.9.${i}`;
const NAMES = ["master1-0a1b2c3d", "master2-4e5f6a7b", "master3-8c9d0e1f"];
const CLUSTER = NAMES.map((n, k) => `${n}=https://${ip(k + 1)}:2380`).join(",");
const CAPTURE = process.env.FMC_ETCD_CAPTURE;

function installReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces)";
  const have = (t: string) => spawnSync("sh", ["-c", `command -v ${t}`]).status === 0;
  if (["etcd", "etcdctl"].every(have) && have("curl") && have("openssl")) return undefined;
  const inst = () => spawnSync("apt-get", ["install", "-y", "--no-install-recommends", "etcd-server", "etcd-client", "curl", "openssl"], { encoding: "utf8", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  let r = inst();
  if (r.status !== 0) {
    spawnSync("apt-get", ["update"], { stdio: "ignore" });
    r = inst();
  }
  if (r.status !== 0 || !["etcd", "etcdctl"].every(have)) return `etcd-server/etcd-client cannot be installed here: ${(r.stderr ?? "").trim().split("\n").pop()}`;
  return undefined;
}
const SKIP = installReason();
if (SKIP) console.log(`skipping the real-etcd tests: ${SKIP}`);

let dir = "";
let access: EtcdAccess;
const procs = new Map<number, ChildProcess>();
const started = Date.now();

/** A transport into one namespace: the command's shell text under sh -c, as over SSH. */
class NetnsTransport implements Transport {
  readonly log: Command[] = [];
  constructor(readonly host: string) {}
  exec(command: Command): Promise<ExecResult> {
    this.log.push(command);
    return new Promise((resolve, reject) => {
      const p = spawn("ip", ["netns", "exec", this.host, "sh", "-c", command.shell], { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (d) => (stdout += d));
      p.stderr.on("data", (d) => (stderr += d));
      const timer = setTimeout(() => p.kill("SIGKILL"), 20_000);
      p.on("error", reject);
      p.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
      p.stdin.end(command.stdin ?? "");
    });
  }
  close(): void {}
}
const on = (i: number) => new NetnsTransport(NS[i - 1]!);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await sleep(200);
  }
}
const capture = (name: string, text: string) => {
  if (CAPTURE) writeFileSync(join(CAPTURE, name), text);
};
const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

function pidsIn(ns: string): number[] {
  const r = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.split(/\s+/).filter(Boolean).map(Number) : [];
}
async function killAllIn(ns: string): Promise<void> {
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    for (const pid of pidsIn(ns)) {
      try {
        process.kill(pid, sig);
      } catch {
        /* gone */
      }
    }
    for (let k = 0; k < 15 && pidsIn(ns).length; k++) await sleep(100);
    if (!pidsIn(ns).length) return;
  }
}
async function teardownNetwork(): Promise<void> {
  const existing = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
  for (const ns of [...NS, SW]) {
    if (!new RegExp(`^${ns}( |$)`, "m").test(existing)) continue;
    await killAllIn(ns);
    spawnSync("ip", ["netns", "del", ns]);
  }
}

function certs(): void {
  const ossl = (args: string[]) => run("openssl", args);
  const ca = (name: string) => ossl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.crt`), "-days", "1", "-subj", `/CN=${name}`]);
  const sign = (name: string, caName: string, cn: string, san: string, usage: string) => {
    ossl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.csr`), "-subj", `/CN=${cn}`]);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\nkeyUsage=critical,digitalSignature,keyEncipherment\n`);
    ossl(["x509", "-req", "-in", join(dir, `${name}.csr`), "-CA", join(dir, `${caName}.crt`), "-CAkey", join(dir, `${caName}.key`), "-CAcreateserial", "-out", join(dir, `${name}.crt`), "-days", "1", "-extfile", join(dir, `${name}.ext`)]);
  };
  // K3s's layout: an etcd server CA and a peer CA; server-client (serving, both usages),
  // peer-server-client, and client.crt (client usage only), as pkg/daemons/control/deps creates them.
  ca("server-ca");
  ca("peer-ca");
  for (const i of [1, 2, 3]) {
    sign(`server-client-${i}`, "server-ca", "etcd-server", `IP:${ip(i)},IP:127.0.0.1,DNS:localhost`, "serverAuth,clientAuth");
    sign(`peer-server-client-${i}`, "peer-ca", "etcd-peer", `IP:${ip(i)}`, "serverAuth,clientAuth");
  }
  sign("client", "server-ca", "etcd-client", "DNS:etcd-client", "clientAuth");
}

function network(): void {
  run("ip", ["netns", "add", SW]);
  run("ip", ["-n", SW, "link", "add", "br0", "type", "bridge"]);
  run("ip", ["-n", SW, "link", "set", "br0", "up"]);
  for (const i of [1, 2, 3]) {
    const ns = NS[i - 1]!;
    run("ip", ["netns", "add", ns]);
    run("ip", ["-n", SW, "link", "add", `v${i}`, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    run("ip", ["-n", SW, "link", "set", `v${i}`, "master", "br0", "up"]);
    run("ip", ["-n", ns, "addr", "add", `${ip(i)}/24`, "dev", "eth0"]);
    run("ip", ["-n", ns, "link", "set", "eth0", "up"]);
    run("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }
}

/** etcd as K3s runs it (pkg/etcd/etcd.go cluster()): client URLs on the node IP and 127.0.0.1, client-cert auth on both ports. */
function startEtcd(i: number, opts: { name?: string; dataDir?: string; cluster?: string } = {}): void {
  const dataDir = opts.dataDir ?? join(dir, `data-${i}`);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const log = openSync(join(dir, `etcd-${i}.log`), "a");
  const p = spawn(
    "ip",
    [
      "netns", "exec", NS[i - 1]!, "etcd",
      "--name", opts.name ?? NAMES[i - 1]!,
      "--data-dir", dataDir,
      "--listen-client-urls", `https://${ip(i)}:2379,https://127.0.0.1:2379`,
      "--advertise-client-urls", `https://${ip(i)}:2379`,
      "--listen-peer-urls", `https://${ip(i)}:2380`,
      "--initial-advertise-peer-urls", `https://${ip(i)}:2380`,
      "--initial-cluster", opts.cluster ?? CLUSTER,
      "--initial-cluster-state", "new",
      "--initial-cluster-token", "fmchelp-etcd",
      "--cert-file", join(dir, `server-client-${i}.crt`), "--key-file", join(dir, `server-client-${i}.key`),
      "--trusted-ca-file", join(dir, "server-ca.crt"), "--client-cert-auth",
      "--peer-cert-file", join(dir, `peer-server-client-${i}.crt`), "--peer-key-file", join(dir, `peer-server-client-${i}.key`),
      "--peer-trusted-ca-file", join(dir, "peer-ca.crt"), "--peer-client-cert-auth",
      "--logger", "zap", "--log-outputs", "stderr",
    ],
    { stdio: ["ignore", log, log] },
  );
  closeSync(log);
  procs.set(i, p);
}

async function stopEtcd(i: number): Promise<void> {
  const p = procs.get(i);
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  // LAB-FACTS: one member once ignored SIGTERM; do not wait for ever.
  const timer = setTimeout(() => p.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
  procs.delete(i);
}

const etcdctl = (i: number, args: string[]) =>
  run("ip", ["netns", "exec", NS[i - 1]!, "etcdctl", "--endpoints", "https://127.0.0.1:2379", "--cacert", join(dir, "server-ca.crt"), "--cert", join(dir, "client.crt"), "--key", join(dir, "client.key"), ...args]);

before(async () => {
  if (SKIP) return;
  if (CAPTURE) mkdirSync(CAPTURE, { recursive: true });
  // leftovers of an interrupted run of this file (our names only)
  await teardownNetwork();
  for (const d of readdirSync(tmpdir())) if (d.startsWith("fmchelp-etcd-")) rmSync(join(tmpdir(), d), { recursive: true, force: true });
  dir = mkdtempSync(join(tmpdir(), "fmchelp-etcd-"));
  certs();
  network();
  access = etcdAccess({ caFile: join(dir, "server-ca.crt"), certFile: join(dir, "client.crt"), keyFile: join(dir, "client.key"), timeoutS: 2 });
  for (const i of [1, 2, 3]) startEtcd(i);
});

after(async () => {
  if (SKIP) return;
  for (const i of [...procs.keys()]) await stopEtcd(i).catch(() => undefined);
  await teardownNetwork();
  if (dir) rmSync(dir, { recursive: true, force: true });
  console.log(`real-etcd tests took ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

const allHealthy = (n: number, from = 1) =>
  until(`${n} healthy etcd members`, async () => {
    const c = await readCluster(on(from), access);
    return c.members.length === n && c.healthy.size === n && c.leader ? c : undefined;
  });

test("three healthy members with their names, one leader, a database of some size", { skip: SKIP }, async () => {
  const t0 = Date.now();
  const c = await allHealthy(3);
  console.log(`3 members healthy ${((Date.now() - t0) / 1000).toFixed(1)} s after start`);
  assert.deepEqual(c.members.map((m) => [m.name, m.node, m.isLearner, m.healthy]), [
    ["master1-0a1b2c3d", "master1", false, true],
    ["master2-4e5f6a7b", "master2", false, true],
    ["master3-8c9d0e1f", "master3", false, true],
  ]);
  assert.equal(c.members.filter((m) => m.isLeader).length, 1);
  assert.ok(c.members.some((m) => m.id === c.leader));
  for (const m of c.members) {
    assert.ok(m.status && m.status.dbSize > 0, `${m.name} db size`);
    assert.equal(m.status!.memberId, m.id);
    assert.deepEqual(m.clientURLs, [`https://${ip(Number(m.node.slice(-1)))}:2379`]);
  }
  // The shell text is what ran: curl with K3s-style TLS files inside the namespace.
  const t = on(1);
  const list = await t.exec(memberListCommand(access));
  assert.equal(list.code, 0, list.stderr);
  assert.match(t.log[0]!.shell, /^curl -sS --max-time 2 --cacert \S+server-ca\.crt --cert \S+client\.crt --key \S+client\.key -X POST .* https:\/\/127\.0\.0\.1:2379\/v3\/cluster\/member\/list$/);
  assert.equal(parseMembers(list.stdout).length, 3);
  capture("member-list.json", list.stdout);
  const st = await t.exec(statusCommand(access));
  capture("status.json", st.stdout);
  assert.equal(parseStatus(st.stdout).leader, c.leader);
  const h = await t.exec(healthCommand(access));
  capture("health.json", h.stdout);
  assert.deepEqual(parseHealth(access.endpoint, h), { endpoint: access.endpoint, healthy: true });
  // /readyz is not in etcd 3.4 (why fmc uses /health)
  const rz = await t.exec({ shell: `${healthCommand(access).shell.replace(/\/health$/, "/readyz")} -o /dev/null -w '%{http_code}'`, display: "readyz" });
  assert.equal(rz.stdout, "404");
});

test("a stopped member is unhealthy and removing another one is refused with the arithmetic", { skip: SKIP }, async () => {
  await stopEtcd(3);
  const c = await until("master3 unhealthy, the others healthy", async () => {
    const v = await readCluster(on(1), access);
    return v.healthy.size === 2 && v.leader ? v : undefined;
  });
  const m3 = c.members.find((m) => m.node === "master3")!;
  assert.equal(m3.healthy, false);
  assert.match(m3.reason!, /Failed to connect|Couldn't connect|Connection refused/);
  const probe = await on(1).exec(probeCommand(access, c.members.map((m) => m.clientURLs[0]!)));
  capture("probe-one-down.txt", probe.stdout);

  const remove2 = quorumCheck(c.members, c.healthy, { kind: "remove", member: "master2" });
  assert.deepEqual(remove2, { ok: false, text: "3 members, quorum 2; 1 unhealthy (master3); removing master2 leaves 1 healthy of 2 members, quorum 2: refused" });
  assert.equal(quorumCheck(c.members, c.healthy, { kind: "stop", member: "master1" }).ok, false);
  assert.equal(quorumCheck(c.members, c.healthy, { kind: "add", name: "master4", learner: true }).ok, false);
  // removing the dead one would be fine
  assert.deepEqual(quorumCheck(c.members, c.healthy, { kind: "remove", member: "master3" }), { ok: true, text: "3 members, quorum 2; 1 unhealthy (master3); removing master3 leaves 2 healthy of 2 members, quorum 2: allowed" });

  // etcd agrees: its strict reconfiguration check refuses the same removal
  const id2 = c.members.find((m) => m.node === "master2")!.id;
  const r = await on(1).exec(memberRemoveCommand(access, id2));
  capture("member-remove-refused.json", r.stdout);
  assert.throws(() => parseMembers(r.stdout), (e: FmcError) => e.code === "ETCD_ERROR" && /unhealthy cluster/.test(e.message));
  const still = parseMembers((await on(1).exec(memberListCommand(access))).stdout);
  assert.equal(still.length, 3);
});

test("with the member started again the same removal is allowed, and removing it shrinks the list to 2", { skip: SKIP }, async () => {
  startEtcd(3);
  const c = await allHealthy(3);
  const verdict = quorumCheck(c.members, c.healthy, { kind: "remove", member: "master2" });
  assert.deepEqual(verdict, { ok: true, text: "3 members, quorum 2; all healthy; removing master2 leaves 2 healthy of 2 members, quorum 2: allowed" });

  const id2 = c.members.find((m) => m.node === "master2")!.id;
  // etcd itself counts a peer as active only after 5 s of connection (HealthInterval): retry its refusal
  const removed = await until("etcd to accept the removal", async () => {
    const r = await on(1).exec(memberRemoveCommand(access, id2));
    return r.code === 0 && !r.stdout.includes('"error"') ? r.stdout : undefined;
  });
  capture("member-remove.json", removed);
  assert.deepEqual(parseMembers(removed).map((m) => m.node), ["master1", "master3"]);
  const after2 = await allHealthy(2);
  assert.deepEqual(after2.members.map((m) => m.name), ["master1-0a1b2c3d", "master3-8c9d0e1f"]);
  // the removed member stops by itself
  const p2 = procs.get(2)!;
  await until("the removed member to exit", async () => p2.exitCode !== null || p2.signalCode !== null, 10_000);
  procs.delete(2);

  // a learner is announced through member/add and removed again
  const add = await on(1).exec(memberAddCommand(access, [`https://${ip(2)}:2380`], { learner: true }));
  capture("member-add-learner.json", add.stdout);
  const learner = parseAddedMember(add.stdout);
  assert.deepEqual([learner.isLearner, learner.started, learner.peerURLs], [true, false, [`https://${ip(2)}:2380`]]);
  const withLearner = await readCluster(on(1), access);
  capture("member-list-learner.json", (await on(1).exec(memberListCommand(access))).stdout);
  assert.equal(withLearner.members.length, 3);
  assert.equal(quorumCheck(withLearner.members, withLearner.healthy, { kind: "add", name: "master4", learner: true }).ok, false);
  assert.match(quorumCheck(withLearner.members, withLearner.healthy, { kind: "remove", member: learner.id }).text, /^2 members \(\+1 learner\), quorum 2; all healthy; removing learner unstarted https:\/\/10\.250\.9\.2:2380 leaves 2 voting members, quorum 2: allowed$/);
  const gone = await on(1).exec(memberRemoveCommand(access, learner.id));
  assert.equal(parseMembers(gone.stdout).length, 2);
});

test("a snapshot of a key is accepted by snapshot status and restores into a fresh member that returns the key", { skip: SKIP }, async () => {
  const t0 = Date.now();
  etcdctl(1, ["put", "/fmc/restore-check", "kept through a snapshot"]);
  const snap = join(dir, "snapshot.db");
  etcdctl(1, ["snapshot", "save", snap]);
  const status = JSON.parse(run("etcdctl", ["snapshot", "status", snap, "-w", "json"])) as { hash: number; revision: number; totalKey: number; totalSize: number };
  assert.ok(status.totalKey > 0 && status.totalSize > 0 && status.revision > 1, JSON.stringify(status));
  // a fresh single member in namespace 2 (its old member is gone)
  const restored = join(dir, "restored");
  const one = `restored1-5a5a5a5a=https://${ip(2)}:2380`;
  run("etcdctl", ["snapshot", "restore", snap, "--name", "restored1-5a5a5a5a", "--data-dir", restored, "--initial-cluster", one, "--initial-advertise-peer-urls", `https://${ip(2)}:2380`, "--initial-cluster-token", "fmchelp-restored"]);
  startEtcd(2, { name: "restored1-5a5a5a5a", dataDir: restored, cluster: one });
  const c = await allHealthy(1, 2);
  assert.deepEqual(c.members.map((m) => m.node), ["restored1"]);
  const r = await on(2).exec(rangeCommand(access, "/fmc/restore-check"));
  capture("range.json", r.stdout);
  assert.equal(parseRangeValue(r.stdout), "kept through a snapshot");
  assert.equal(parseRangeValue((await on(2).exec(rangeCommand(access, "/fmc/absent"))).stdout), undefined);
  console.log(`snapshot save + status + restore + serve: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (CAPTURE) writeFileSync(join(CAPTURE, "snapshot-status.json"), JSON.stringify(status) + "\n");
});
