// fmc certs: real certificates made by openssl in a directory laid out as K3s's data dir
// (a CA, leaves expiring in 10 and 400 days, one expired and one not yet valid through
// `openssl ca -startdate/-enddate`, a chain file, a key beside a certificate, dynamiclistener's
// JSON), listed by the command's own shell text under bash, parsed, classified, and shown.
// fmc certs rotate: its runbook carried out against replayed K3s, kubectl and etcd answers
// (the exact order, the refusals, the stop at the first failure, a wait that runs out).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { contextFor, requireTool, tempDir } from "../helpers.js";
import {
  certListCommand, certRotateCommand, certsRotateRunbook, classifyCert, distinctCerts, k3sCertLocations, K3S_DATA_DIR, k3sRenewalDays, parseCertListing, rotateVerdict, x509Time, type DistinctCert,
} from "../../src/runbooks/certs.js";
import { certsExitCode, certsText, certsView } from "../../src/cli/certs-commands.js";
import { RecordingTransport, type ExecResult } from "../../src/hosts/transport.js";
import { etcdAccess, readCluster, type EtcdClusterView } from "../../src/k3s/etcd.js";
import { runRunbook, runbookText, stoppedText } from "../../src/runbooks/runbook.js";
import { agentNode, etcdAnswer, fail, fixture, healthyServer, ok, probeAllUp, probeAnswer, probeOneDown, replay } from "../k3s-replay.js";

const DAY = 86_400_000;

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8" });
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}
const openssl = (cwd: string, ...args: string[]) => run("openssl", args, cwd);
const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
/** openssl ca's time format. */
const stamp = (ms: number) => `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;

/** A K3s-like data dir (with a space in its path, for the quoting) and the time the certificates were made. */
function k3sDataDir(t: { after: (fn: () => void) => void }): { data: string; made: number } {
  requireTool("openssl");
  const work = tempDir(t, "fmc-certs-");
  const made = Math.floor(Date.now() / 1000) * 1000;
  const data = join(work, "k3s data");
  const tls = join(data, "server/tls");
  for (const d of [join(tls, "etcd"), join(data, "agent"), join(work, "db")]) mkdirSync(d, { recursive: true });
  openssl(work, "req", "-x509", ...EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/O=fmc test/CN=etcd-server-ca@1700000000");
  const leaf = (name: string, cn: string, days: number) => {
    openssl(work, "req", ...EC, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
    openssl(work, "x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", String(days), "-out", `${name}.crt`);
    return readFileSync(join(work, `${name}.crt`), "utf8");
  };
  // dates in the past or the future: openssl 3.0's x509 has no -not_after, `openssl ca` has -startdate/-enddate
  writeFileSync(join(work, "ca.cnf"), "[ca]\ndefault_ca = fmc\n[fmc]\ndatabase = db/index.txt\nnew_certs_dir = db\nserial = db/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n");
  writeFileSync(join(work, "db/index.txt"), "");
  writeFileSync(join(work, "db/serial"), "1000\n");
  const dated = (name: string, cn: string, from: number, to: number) => {
    openssl(work, "req", ...EC, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
    openssl(work, "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", "-in", `${name}.csr`, "-out", `${name}.crt`, "-notext", "-startdate", stamp(from), "-enddate", stamp(to));
    return readFileSync(join(work, `${name}.crt`), "utf8");
  };
  const ca = readFileSync(join(work, "ca.crt"), "utf8");
  writeFileSync(join(tls, "etcd/server-ca.crt"), ca);
  writeFileSync(join(tls, "etcd/server-ca.key"), readFileSync(join(work, "ca.key")));
  writeFileSync(join(tls, "etcd/server-client.crt"), leaf("server-client", "master1", 400));
  writeFileSync(join(tls, "etcd/peer-server-client.crt"), leaf("peer", "master1-peer", 10));
  writeFileSync(join(tls, "client-admin.crt"), dated("admin", "system:admin", made - 30 * DAY, made - DAY));
  writeFileSync(join(tls, "client-future.crt"), dated("future", "system:future", made + 2 * DAY, made + 300 * DAY));
  writeFileSync(join(tls, "broken.crt"), "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
  // K3s's agent files: the leaf, then its CA
  writeFileSync(join(data, "agent/client-kubelet.crt"), leaf("kubelet", "system:node:master1", 400) + ca);
  // a key in a .crt file stays on the host
  writeFileSync(join(data, "agent/serving-kubelet.crt"), readFileSync(join(work, "kubelet.key"), "utf8") + leaf("serving", "master1", 400));
  // dynamiclistener's cache: a Secret as JSON, tls.crt and tls.key base64
  const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
  writeFileSync(join(tls, "dynamic-cert.json"), `${JSON.stringify({ kind: "Secret", apiVersion: "v1", metadata: { name: "k3s-serving" }, data: { "tls.crt": b64(leaf("serving6443", "k3s", 400) + ca), "tls.key": b64(readFileSync(join(work, "serving6443.key"))) }, type: "kubernetes.io/tls" })}\n`);
  return { data, made };
}

const bash = (shell: string) => {
  const r = spawnSync("bash", ["-c", shell], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
};

test("the listing prints every certificate of K3s's directories, no key, and parses to records", (t) => {
  const { data, made } = k3sDataDir(t);
  const loc = k3sCertLocations(data);
  assert.deepEqual(loc.dirs, [`${data}/server/tls`, `${data}/server/tls/etcd`, `${data}/agent`]);
  const out = bash(certListCommand(loc).shell);
  assert.doesNotMatch(out, /PRIVATE KEY/);
  for (const f of ["ca.key", "kubelet.key", "serving6443.key"]) {
    const key = readFileSync(join(data, "..", f), "utf8").split("\n")[1]!;
    assert.ok(!out.includes(key), `${f} must not be printed`);
  }
  const l = parseCertListing(out);
  assert.deepEqual(l.missingDirs, []);
  assert.deepEqual(l.dirs, loc.dirs);
  assert.equal(l.problems.length, 1);
  assert.match(l.problems[0]!, /server\/tls\/broken\.crt: certificate 1 does not parse/);
  const rel = (p: string) => p.slice(data.length + 1);
  assert.deepEqual(
    l.certs.map((c) => `${rel(c.path)}#${c.index} ${c.subject} ${c.ca ? "CA" : "leaf"}`).sort(),
    [
      "agent/client-kubelet.crt#0 system:node:master1 leaf",
      "agent/client-kubelet.crt#1 etcd-server-ca@1700000000 CA",
      "agent/serving-kubelet.crt#0 master1 leaf",
      "server/tls/client-admin.crt#0 system:admin leaf",
      "server/tls/client-future.crt#0 system:future leaf",
      "server/tls/dynamic-cert.json#0 k3s leaf",
      "server/tls/dynamic-cert.json#1 etcd-server-ca@1700000000 CA",
      "server/tls/etcd/peer-server-client.crt#0 master1-peer leaf",
      "server/tls/etcd/server-ca.crt#0 etcd-server-ca@1700000000 CA",
      "server/tls/etcd/server-client.crt#0 master1 leaf",
    ],
  );
  const admin = l.certs.find((c) => c.subject === "system:admin")!;
  assert.equal(admin.notAfter, new Date(made - DAY).toISOString());
  assert.equal(admin.issuer, "etcd-server-ca@1700000000");
  // openssl agrees on the dates
  const end = run("openssl", ["x509", "-noout", "-enddate", "-in", join(data, "server/tls/etcd/peer-server-client.crt")], data).trim().replace(/^notAfter=/, "");
  assert.equal(l.certs.find((c) => c.subject === "master1-peer")!.notAfter, x509Time(end));

  // the CA in three files is one certificate, reported where it is the file's own
  const distinct = distinctCerts(l.certs);
  assert.equal(distinct.length, 8);
  const ca = distinct.find((c) => c.ca)!;
  assert.equal(rel(ca.path), "server/tls/etcd/server-ca.crt");
  assert.deepEqual(ca.alsoIn.map(rel).sort(), ["agent/client-kubelet.crt", "server/tls/dynamic-cert.json"]);
});

test("classified at an injected now: expired, within the window, not yet valid, ok; the table and exit code say so", (t) => {
  const { data, made } = k3sDataDir(t);
  const listing = parseCertListing(bash(certListCommand(k3sCertLocations(data)).shell));
  const now = new Date(made + 3_600_000);
  const v = certsView([{ server: "master1", listing }, { server: "master2", error: "unreachable: connect ECONNREFUSED" }], now, 120);
  const by = (cn: string) => v.servers[0]!.checks.find((c) => c.subject === cn)!;
  assert.deepEqual([by("master1-peer").status, by("master1-peer").daysLeft, by("master1-peer").renewedOnRestart], ["renew", 9, true]);
  assert.deepEqual([by("system:admin").status, by("system:admin").daysLeft], ["expired", -2]);
  assert.equal(by("system:future").status, "not-yet-valid");
  assert.deepEqual([by("k3s").status, by("k3s").daysLeft], ["ok", 399]);
  assert.deepEqual([by("etcd-server-ca@1700000000").status, by("etcd-server-ca@1700000000").renewedOnRestart], ["ok", false]);
  assert.equal(certsExitCode(v), 1);

  const text = certsText(v, { dataDir: data, version: "v1.33.4+k3s1" });
  const row = (path: string) => text.split("\n").find((x) => x.startsWith(`  ${path} `)) ?? "";
  assert.match(row("server/tls/etcd/peer-server-client.crt"), /master1-peer +leaf +\d{4}-\d\d-\d\d \d\d:\d\d UTC +9 d {2}within 120 days: a K3s restart renews it$/);
  assert.match(row("server/tls/client-admin.crt"), /system:admin +leaf .* -2 d {2}EXPIRED: a K3s restart renews it$/);
  assert.match(row("server/tls/client-future.crt"), /NOT YET VALID: check the server's clock$/);
  assert.match(row("server/tls/etcd/server-ca.crt"), /etcd-server-ca@1700000000 +CA {3}.* 3649 d {2}ok \(\+2 copies\)$/);
  assert.match(text, /^ {2}problem: .*broken\.crt: certificate 1 does not parse/m);
  assert.match(text, /^master2\n {2}error: unreachable: connect ECONNREFUSED$/m);
  assert.match(text, /^8 certificates on 1 of 2 servers: 1 expired, 1 within 120 days, 1 not yet valid, 5 ok$/m);
  assert.match(text, /^ {2}restart K3s on master1, one server at a time: on start K3s renews the leaf certificates that are expired or within 120 days of expiry$/m);
  assert.doesNotMatch(text, /rotate-ca/);

  // a window of 5 days: the 10-day certificate is ok
  const narrow = certsView([{ server: "master1", listing }], now, 5);
  assert.equal(narrow.servers[0]!.checks.find((c) => c.subject === "master1-peer")!.status, "ok");
});

test("a server whose certificates are all fine exits 0; one with none at all is an error", (t) => {
  const { data, made } = k3sDataDir(t);
  const loc = { dirs: [`${data}/server/tls/etcd`] };
  const listing = parseCertListing(bash(certListCommand(loc).shell));
  const now = new Date(made + 3_600_000);
  // the 10-day peer certificate is inside 120 days, not inside 7
  assert.equal(certsExitCode(certsView([{ server: "master1", listing }], now, 120)), 1);
  const fine = certsView([{ server: "master1", listing }], now, 7);
  assert.equal(certsExitCode(fine), 0);
  assert.match(certsText(fine, { dataDir: data }), /^3 certificates on 1 of 1 server: 0 expired, 0 within 7 days, 3 ok$/m);

  const none = parseCertListing(bash(certListCommand(k3sCertLocations(join(data, "nowhere"))).shell));
  assert.deepEqual(none.missingDirs, k3sCertLocations(join(data, "nowhere")).dirs);
  const v = certsView([{ server: "master3", listing: none }], now, 120);
  assert.equal(certsExitCode(v), 1);
  assert.match(certsText(v), /^ {2}error: no certificates in .*nowhere\/server\/tls, .* \(is K3s installed\?\)$/m);
});

test("a CA inside the window is not renewed by a restart: the table says rotate-ca", () => {
  const now = new Date("2026-01-01T00:00:00Z");
  const rec = (path: string, ca: boolean, days: number): DistinctCert => ({
    path: `${K3S_DATA_DIR}/${path}`,
    index: 0,
    subject: ca ? "k3s-server-ca@1" : "system:admin",
    issuer: "k3s-server-ca@1",
    notBefore: "2025-01-01T00:00:00.000Z",
    notAfter: new Date(now.getTime() + days * DAY).toISOString(),
    ca,
    fingerprint256: `${path}`,
    alsoIn: [],
  });
  const checks = [classifyCert(rec("server/tls/client-admin.crt", false, 200), now, 90), classifyCert(rec("server/tls/server-ca.crt", true, 30), now, 90)];
  const v = { now: now.toISOString(), windowDays: 90, servers: [{ server: "master1", checks, missingDirs: [], problems: [] }] };
  assert.equal(
    certsText(v, { version: "v1.32.4+k3s1" }),
    [
      "master1",
      "  server/tls/client-admin.crt  system:admin     leaf  2026-07-20 00:00 UTC    200 d  ok",
      "  server/tls/server-ca.crt     k3s-server-ca@1  CA    2026-01-31 00:00 UTC     30 d  within 90 days: a CA, never renewed automatically",
      "2 certificates on 1 of 1 server: 0 expired, 1 within 90 days, 1 ok",
      "  CA certificates on master1 are never renewed automatically: k3s certificate rotate-ca (docs.k3s.io/cli/certificate)",
      "",
    ].join("\n"),
  );
  assert.equal(certsExitCode(v), 1);
});

test("the window's edge is K3s's: notAfter exactly now + window is ok, a millisecond less is inside", () => {
  const now = new Date("2026-03-01T12:00:00Z");
  const at = (ms: number): DistinctCert => ({ path: "/x.crt", index: 0, subject: "s", issuer: "i", notBefore: "2026-01-01T00:00:00.000Z", notAfter: new Date(ms).toISOString(), ca: false, fingerprint256: "f", alsoIn: [] });
  assert.equal(classifyCert(at(now.getTime() + 120 * DAY), now, 120).status, "ok");
  assert.equal(classifyCert(at(now.getTime() + 120 * DAY - 1), now, 120).status, "renew");
  assert.equal(classifyCert(at(now.getTime()), now, 120).status, "renew");
  assert.equal(classifyCert(at(now.getTime() - 1), now, 120).status, "expired");
  assert.throws(() => classifyCert(at(0), now, -1), /whole days/);
});

test("K3s's renewal window by version: 120 days from the May 2025 releases, 90 before", () => {
  const cases: Array<[string, number]> = [
    ["v1.33.4+k3s1", 120], ["v1.33.1+k3s1", 120], ["v1.33.0+k3s1", 90], ["v1.32.5+k3s1", 120], ["v1.32.4+k3s1", 90],
    ["v1.31.9+k3s1", 120], ["v1.31.8+k3s1", 90], ["v1.30.13+k3s1", 120], ["v1.30.12+k3s1", 90], ["v1.29.15+k3s1", 90], ["v1.34.1+k3s1", 120],
  ];
  assert.deepEqual(cases.map(([v]) => [v, k3sRenewalDays(v)]), cases);
  assert.throws(() => k3sRenewalDays("1.33"), /not a K3s version/);
});

test("paths reach the shell quoted, and relative or multi-line ones are refused", () => {
  const c = certListCommand({ dirs: ["/srv/it's here"], dynamicCert: "/srv/a b.json" });
  assert.match(c.shell, /for d in '\/srv\/it'\\''s here'; do/);
  assert.match(c.shell, /'\/srv\/a b\.json'/);
  assert.throws(() => certListCommand({ dirs: ["relative/tls"] }), /not an absolute path/);
  assert.throws(() => certListCommand({ dirs: ["/a\nb"] }), /not an absolute path/);
});

// --- fmc certs rotate, carried out against replayed answers -----------------------------------
// K3s's `k3s certificate rotate` log lines and kubectl's Node objects are replayed from
// test/fixtures/k3s and test/fixtures/kubectl (their README.md says where each comes from);
// etcd's answers from test/fixtures/etcd (a real etcd 3.4). K3s itself never runs here.

const ctx = contextFor();
const quick = { serverS: 0.05, nodeS: 0.05, everyS: 0.01 };
const SERVERS = ["master1", "master2", "master3"];
const AGENTS = ["worker1", "worker2", "worker3", "storage1"];
const etcdView = (probe: string): Promise<EtcdClusterView> => readCluster(new RecordingTransport("master1", [(c) => etcdAnswer(c, () => probe)]), etcdAccess());
const ETCD_READ = [
  "curl -sS --max-time 5 --cacert /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt --cert /var/lib/rancher/k3s/server/tls/etcd/client.crt --key /var/lib/rancher/k3s/server/tls/etcd/client.key -X POST -H 'Content-Type: application/json' -d '{}' https://127.0.0.1:2379/v3/cluster/member/list",
  "etcd health and status of https://10.250.9.1:2379, https://10.250.9.2:2379, https://10.250.9.3:2379",
];
const rotated = (unit: string) => `k3s certificate rotate (K3s is stopped; its certificates are saved first: if the rotation fails, they are put back and ${unit} is started again)`;
const serverLog = (s: string) => [
  ...ETCD_READ.map((c) => `${s}: ${c}`),
  `${s}: systemctl stop k3s.service`,
  `${s}: ${rotated("k3s.service")}`,
  `${s}: systemctl start k3s.service`,
  `${s}: k3s --version; k3s kubectl get --raw=/readyz; etcd /health; k3s kubectl get node ${s} -o json`,
];
const agentLog = (a: string) => [`${a}: systemctl stop k3s-agent.service`, `${a}: ${rotated("k3s-agent.service")}`, `${a}: systemctl start k3s-agent.service`, `master1: k3s kubectl get node ${a} -o json`];

/** The seed's K3s nodes: servers rotate as K3s logs it, agents as a K3s from 2024-04 on does, unless told otherwise. */
function rotating(o: { probe?: (n: number) => string; rotate?: (host: string) => ExecResult | undefined; server?: (host: string) => ExecResult | undefined } = {}) {
  let probes = 0;
  return replay([...SERVERS, ...AGENTS], (host, c) => {
    const etcd = etcdAnswer(c, () => (o.probe ?? (() => probeAllUp))(probes++));
    if (etcd) return etcd;
    if (c.display.startsWith("k3s certificate rotate")) return o.rotate?.(host) ?? ok("", fixture("k3s", SERVERS.includes(host) ? "certificate-rotate-server.txt" : "certificate-rotate-agent.txt")); // K3s logs on stderr
    if (c.display.startsWith("k3s --version; k3s kubectl get --raw=/readyz")) return o.server?.(host) ?? healthyServer(host, "v1.33.4+k3s1");
    const get = /^k3s kubectl get node (\S+) -o json$/.exec(c.display);
    if (get) return agentNode(get[1]!, { ready: true, version: "v1.33.4+k3s1" });
    return undefined;
  });
}

test("certs rotate: each server re-checked, stopped, rotated, started and healthy again before the next; then each agent, waited for until Ready", async () => {
  const rb = certsRotateRunbook(ctx, await etcdView(probeAllUp), { wait: quick });
  const { log, transports } = rotating();
  const out = await runRunbook(rb.steps, transports);
  assert.equal(out.failed, undefined, out.failed?.reason);
  assert.deepEqual(log, [...SERVERS.flatMap(serverLog), ...AGENTS.flatMap(agentLog)]);
  const text = runbookText(rb.heading, rb.steps);
  assert.match(text, /^Rotate the K3s client and server certificates \(new keys; the CAs stay\): 3 server\(s\) one at a time, each healthy again before the next, then 4 agent\(s\) one at a time; it stops at the first failure\n {2}1\. read etcd again: stop master1 only if etcd keeps quorum\n {2}2\. stop K3s on master1\n {7}on master1: systemctl stop k3s\.service\n {2}3\. rotate master1's certificates/);
  assert.match(text, /^ {2}16\. stop the K3s agent on worker1\n/m);
  assert.equal(rb.steps.length, 3 * 5 + 4 * 4);
});

test("certs rotate refuses before anything runs when a server's stop would lose quorum; a member lost later stops the run at the re-check, with nothing stopped after it", async () => {
  assert.throws(() => certsRotateRunbook(ctx, { members: [], healthy: new Set() }), /rotating master1's certificates stops it: no voting members listed: refused/);
  const oneDown = await etcdView(probeOneDown);
  assert.throws(() => certsRotateRunbook(ctx, oneDown), /rotating master1's certificates stops it: 3 members, quorum 2; 1 unhealthy \(master3\); stopping master1 leaves 1 healthy of 3 members, quorum 2: refused/);
  const rb = certsRotateRunbook(ctx, await etcdView(probeAllUp), { wait: quick });
  const { log, transports } = rotating({ probe: (n) => (n === 0 ? probeAllUp : probeOneDown) });
  const out = await runRunbook(rb.steps, transports);
  assert.equal(out.failed!.step.title, "read etcd again: stop master2 only if etcd keeps quorum");
  assert.deepEqual(log, [...serverLog("master1"), ...ETCD_READ.map((c) => `master2: ${c}`)]);
  assert.ok(!log.includes("master2: systemctl stop k3s.service"));
});

test("certs rotate: a server that does not come back healthy in time fails its wait, and the next server is never stopped", async () => {
  const rb = certsRotateRunbook(ctx, await etcdView(probeAllUp), { wait: quick });
  const refused = probeAnswer({ version: ok(fixture("k3s", "version-v1.33.4.txt")), readyz: fail(1, fixture("kubectl", "refused.txt")), etcd: ok(fixture("etcd", "health.json")), node: fail(1, fixture("kubectl", "refused.txt")) });
  const { log, transports } = rotating({ server: (h) => (h === "master1" ? refused : undefined) });
  const out = await runRunbook(rb.steps, transports);
  assert.equal(out.failed!.index, 4);
  assert.equal(out.failed!.reason, "not done after 0.05 s: API /readyz: The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?; node master1: The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?");
  assert.ok(!log.some((l) => l.startsWith("master2:") || l.startsWith("worker")), log.join("\n"));
});

test("certs rotate: an agent whose K3s predates agent rotation fails its rotate step; the run stops there and names it", async () => {
  const rb = certsRotateRunbook(ctx, await etcdView(probeAllUp), { wait: quick });
  const { log, transports } = rotating({ rotate: (h) => (h === "worker2" ? fail(1, `${fixture("k3s", "certificate-rotate-agent-old.txt")}k3s certificate rotate failed: k3s-agent.service is started again with the certificates it has\n`) : undefined) });
  const out = await runRunbook(rb.steps, transports);
  assert.equal(out.failed!.step.title, "rotate worker2's certificates (k3s certificate rotate: agent)");
  assert.match(stoppedText(rb.steps, out), /^stopped at step 21 of 31 \(rotate worker2's certificates \(k3s certificate rotate: agent\)\) on worker2: exit 1: FATA\[0000\] stat \/var\/lib\/rancher\/k3s\/server\/tls: no such file or directory\nk3s certificate rotate failed: k3s-agent\.service is started again/);
  assert.deepEqual(log.slice(-2), ["worker2: systemctl stop k3s-agent.service", `worker2: ${rotated("k3s-agent.service")}`]);
  // K3s's own lines say whether it rotated: an exit 0 without them is not a rotation
  assert.equal(rotateVerdict(ok("", fixture("k3s", "certificate-rotate-server.txt"))), undefined);
  assert.equal(rotateVerdict(ok(fixture("k3s", "certificate-rotate-agent.txt"))), undefined);
  assert.match(rotateVerdict(ok(""))!, /did not say it backed up/);
});

test("the rotate step's own script starts K3s again when the rotation fails (run under bash, with systemctl recorded)", (t) => {
  if (existsSync("/usr/local/bin/k3s") || existsSync("/opt/bin/k3s")) return t.skip("a k3s binary is installed here: the failure can't be provoked");
  const dir = tempDir(t);
  writeFileSync(join(dir, "systemctl"), `#!/bin/sh\necho "$@" >> '${dir}/calls'\n`, { mode: 0o755 });
  const c = certRotateCommand("k3s-agent.service");
  const r = spawnSync("bash", ["-c", c.shell], { encoding: "utf8", env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /\/usr\/local\/bin\/k3s: No such file or directory\nk3s certificate rotate failed \(exit 127\): the certificates are put back as they were and k3s-agent\.service is started again\n$/);
  assert.equal(readFileSync(join(dir, "calls"), "utf8"), "start k3s-agent.service\n");
});

// --- the rotate step's script against a stand-in k3s that does what K3s's rotate does -------------
// (k3s-io/k3s pkg/cli/cert/cert.go rotate: server/tls copied to server/tls-<time>, the agent's
// certificates into it, the dynamic listener's regenerate trigger written, the leaf files
// deleted, then "Successfully backed up certificates to <dir>" logged). Run in a private mount
// namespace whose /usr/local/bin holds only the stand-in; the data directory is a temporary one.

/** A K3s data directory with a server's and its agent's certificate files (and containerd's state, never copied). */
function rotateDataDir(dir: string): string {
  const data = join(dir, "k3s");
  const files: Record<string, string> = {
    "server/tls/server-ca.crt": "CA\n",
    "server/tls/server-ca.key": "CA KEY\n",
    "server/tls/serving-kube-apiserver.crt": "APISERVER\n",
    "server/tls/serving-kube-apiserver.key": "APISERVER KEY\n",
    "server/tls/etcd/peer-server-client.crt": "ETCD PEER\n",
    "agent/client-kubelet.crt": "KUBELET\n",
    "agent/client-kubelet.key": "KUBELET KEY\n",
    "agent/containerd/io.containerd.snapshotter/big": "LAYERS\n",
  };
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(data, p, ".."), { recursive: true });
    writeFileSync(join(data, p), c, { mode: 0o600 });
  }
  return data;
}

/** Every file under `root` with its content, sorted: what "as it was" means. */
function fileTree(root: string): string {
  const r = spawnSync("bash", ["-c", 'cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do printf "%s %s\\n" "$f" "$(cat "$f")"; done', "tree", root], { encoding: "utf8" });
  return r.stdout;
}

/** A stand-in `k3s` whose `certificate rotate` does K3s's removal on `data`, then prints `last` and exits `code`. */
const standIn = (data: string, last: string, code: number) => `#!/bin/bash
[ "$1 $2" = "certificate rotate" ] || exit 2
echo 'time="2025-01-01T00:00:00Z" level=info msg="Server detected, rotating agent and server certificates"' >&2
b=${data}/server/tls-1712703646
cp -a ${data}/server/tls "$b" && cp -a ${data}/agent/client-kubelet.crt ${data}/agent/client-kubelet.key "$b"/
touch ${data}/server/tls/dynamic-cert-regenerate
rm -f ${data}/server/tls/serving-kube-apiserver.crt ${data}/server/tls/serving-kube-apiserver.key ${data}/server/tls/etcd/peer-server-client.crt ${data}/agent/client-kubelet.crt ${data}/agent/client-kubelet.key
${last ? `echo '${last}' >&2` : ""}
exit ${code}
`;

function rotateWith(t: { after: (fn: () => void) => void }, last: string, code: number) {
  requireTool("unshare");
  const dir = tempDir(t);
  const data = rotateDataDir(dir);
  mkdirSync(join(dir, "bin"));
  writeFileSync(join(dir, "bin", "systemctl"), `#!/bin/sh\necho "$@" >> '${dir}/calls'\n`, { mode: 0o755 });
  writeFileSync(join(dir, "k3s-standin"), standIn(data, last, code), { mode: 0o755 });
  writeFileSync(join(dir, "rotate"), certRotateCommand("k3s.service", data).shell);
  const before = fileTree(data);
  const r = spawnSync("unshare", ["--mount", "--propagation", "private", "bash", "-c", `mount -t tmpfs none /usr/local/bin && cp '${dir}/k3s-standin' /usr/local/bin/k3s && PATH='${dir}/bin':$PATH bash '${dir}/rotate'`], { encoding: "utf8", timeout: 20_000 });
  const calls = existsSync(join(dir, "calls")) ? readFileSync(join(dir, "calls"), "utf8") : "";
  // K3s's own backup directory stays either way; compare everything else
  const now = fileTree(data).split("\n").filter((l) => !l.startsWith("./server/tls-1712703646/")).join("\n");
  return { r, calls, before, now, data };
}

test("the rotate step: a rotation that exits 0 without K3s's closing line puts the certificates back and starts K3s again", (t) => {
  const { r, calls, before, now, data } = rotateWith(t, "", 0);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /k3s certificate rotate exited 0 without saying it backed up and removed the certificates: the certificates are put back as they were and k3s\.service is started again\n$/);
  assert.equal(now, before, "every certificate and key is back, with its content; no regenerate trigger is left");
  assert.equal(calls, "start k3s.service\n");
  assert.equal(existsSync(join(data, "fmc-certs-before-rotate")), false, "fmc's saved copy is gone once restored");
  // the runbook step fails on it, so the run stops there
  assert.match(rotateVerdict({ code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr })!, /did not say it backed up/);
});

test("the rotate step: a failed rotation (non-zero exit after K3s removed files) puts them back too; a good one leaves K3s's removal for its start", (t) => {
  const failed = rotateWith(t, 'time="2025-01-01T00:00:00Z" level=fatal msg="open /var/lib/rancher/k3s/agent/tls-1712703646: no space left on device"', 1);
  assert.equal(failed.r.status, 1, failed.r.stderr);
  assert.match(failed.r.stderr, /no space left on device"\nk3s certificate rotate failed \(exit 1\): the certificates are put back as they were/);
  assert.equal(failed.now, failed.before);
  assert.equal(failed.calls, "start k3s.service\n");
  const good = rotateWith(t, "INFO[0000] Successfully backed up certificates to /var/lib/rancher/k3s/server/tls-1712703646, please restart k3s server or agent to rotate certificates", 0);
  assert.equal(good.r.status, 0, good.r.stderr);
  assert.equal(good.calls, "", "K3s is started by the next step, not here");
  assert.doesNotMatch(good.now, /serving-kube-apiserver|client-kubelet/, "the leaf files are gone: K3s makes new ones when it starts");
  assert.match(good.now, /dynamic-cert-regenerate/);
  assert.equal(existsSync(join(good.data, "fmc-certs-before-rotate")), false);
  assert.equal(rotateVerdict({ code: 0, stdout: good.r.stdout, stderr: good.r.stderr }), undefined);
});
