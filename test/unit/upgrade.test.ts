// fmc upgrade: the checks and the order on the seed without a cluster (version skew, batches),
// then the runbook carried out through transports that replay what K3s, kubectl and etcd print
// (test/fixtures/{k3s,kubectl,etcd}, see their README.md): the exact order of commands across
// hosts, the refusals (a skipped minor version, a downgrade, quorum lost at plan time or at the
// re-check right before a server restarts), the stop at the first failure, and a wait that
// runs out of time. K3s itself never runs here: these are its formats, replayed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { script, type Command } from "../../src/hosts/command.js";
import { RecordingTransport } from "../../src/hosts/transport.js";
import { etcdAccess, readCluster, type EtcdClusterView } from "../../src/k3s/etcd.js";
import { runRunbook, runbookText, stoppedText } from "../../src/runbooks/runbook.js";
import { skewRefusal, upgradeBinaryCommand, upgradeFrom, upgradePlan, upgradeRunbook } from "../../src/runbooks/upgrade.js";
import { nodeNotReady, parseNode, parseProbeParts, probeCommand, serverProbeVerdict } from "../../src/runbooks/k3s-steps.js";
import { k3sBinaryCommand, parseK3sVersion, parseK3sVersionOutput } from "../../src/k3s/k3s-cli.js";
import type { K3sBundle } from "../../src/local/bundle.js";
import { contextFor, tempDir } from "../helpers.js";
import { agentNode, etcdAnswer, fail, fixture, healthyServer, ok, probeAllUp, probeAnswer, probeOneDown, replay } from "../k3s-replay.js";

const v = parseK3sVersion;
const ctx = contextFor();
const FROM = "v1.33.4+k3s1";
const TO = "v1.33.5+k3s1";
/** Waits that give up at once: a test never sleeps through a real timeout. */
const quick = { serverS: 0.05, nodeS: 0.05, everyS: 0.01 };
const SERVERS = ["master1", "master2", "master3"];
const AGENTS = ["worker1", "worker2", "worker3", "storage1"];

test("version skew: patch and next-minor upgrades go ahead; a skipped minor, a downgrade, the same version or a major change are refused", () => {
  assert.equal(skewRefusal(v("v1.33.4+k3s1"), v("v1.33.5+k3s1")), undefined);
  assert.equal(skewRefusal(v("v1.33.4+k3s1"), v("v1.33.4+k3s2")), undefined, "a new K3s build of the same Kubernetes");
  assert.equal(skewRefusal(v("v1.33.4+k3s1"), v("v1.34.1+k3s1")), undefined);
  assert.match(skewRefusal(v("v1.33.4+k3s1"), v("v1.35.0+k3s1"))!, /skips 1 minor version\(s\)/);
  assert.match(skewRefusal(v("v1.33.4+k3s1"), v("v1.33.3+k3s1"))!, /older than/);
  assert.match(skewRefusal(v("v1.33.4+k3s1"), v("v1.33.4+k3s1"))!, /runs v1\.33\.4\+k3s1 already/);
  assert.match(skewRefusal(v("v1.33.4+k3s1"), v("v2.0.0+k3s1"))!, /major/);
  for (const bad of ["1.33.4", "v1.33.4", "v1.33.4+k3s", "v1.33.4+k3s1; rm -rf /"]) assert.throws(() => v(bad), /is not a K3s version/);
});

test("order on the seed: the three servers one by one, then the agents in batches of --batch", () => {
  const p = upgradePlan(ctx, FROM, TO, undefined, 2);
  assert.ok(p.ok);
  assert.deepEqual(p.steps.map((s) => `${s.role}:${s.wave}:${s.node}`), ["server:1:master1", "server:2:master2", "server:3:master3", "agent:1:worker1", "agent:1:worker2", "agent:2:worker3", "agent:2:storage1"]);
  assert.throws(() => upgradePlan(ctx, FROM, TO, undefined, 0), /--batch 0/);
});

test("where an upgrade starts: the oldest version the nodes' binaries report; a node already newer than the target refuses", () => {
  const read = (...vs: Array<[string, string]>) => new Map(vs);
  assert.deepEqual(upgradeFrom(read(["master1", "v1.33.5+k3s1"], ["master2", "v1.33.4+k3s1"], ["worker1", "v1.33.4+k3s1"]), "v1.34.1+k3s1", FROM), { ok: true, from: "v1.33.4+k3s1", running: ["v1.33.4+k3s1", "v1.33.5+k3s1"] });
  // a node left behind a minor version decides the skew, whatever the spec pins
  const behind = upgradeFrom(read(["master1", "v1.33.4+k3s1"], ["worker1", "v1.32.9+k3s1"]), "v1.34.1+k3s1", FROM);
  assert.ok(behind.ok);
  const skipped = upgradeRunbook(ctx, behind.from, "v1.34.1+k3s1", undefined, 1);
  assert.deepEqual(skipped, { ok: false, text: "v1.32.9+k3s1 -> v1.34.1+k3s1 skips 1 minor version(s): Kubernetes upgrades one minor version at a time (v1.33.x first)" });
  assert.deepEqual(upgradeFrom(read(["master1", "v1.33.4+k3s1"], ["worker2", "v1.33.6+k3s1"]), TO, FROM), { ok: false, text: "worker2 runs v1.33.6+k3s1, newer than v1.33.5+k3s1: fmc does not downgrade K3s" });
  assert.deepEqual(upgradeFrom(read(), TO, FROM), { ok: true, from: FROM, running: [] }, "none read: the spec's version");
});

// --- what K3s and kubectl print ------------------------------------------------------------

test("k3s --version and Node objects as kubectl prints them: version, Ready, cordoned", () => {
  assert.equal(parseK3sVersionOutput(fixture("k3s", "version-v1.33.5.txt")), "v1.33.5+k3s1");
  assert.equal(parseK3sVersionOutput(fixture("k3s", "version-v1.33.4.txt")), "v1.33.4+k3s1");
  // the lab's stand-in (src/lab/k3s-standin.ts) prints its own name where K3s prints the commit
  assert.equal(parseK3sVersionOutput("k3s version v1.33.4+k3s1 (fmc-lab-stand-in)\n"), "v1.33.4+k3s1");
  assert.throws(() => parseK3sVersionOutput("bash: /usr/local/bin/k3s: No such file or directory\n"), /not what k3s --version prints/);

  const w2 = parseNode(fixture("kubectl", "node-worker2.json"));
  assert.deepEqual(w2, { name: "worker2", kubeletVersion: "v1.33.5+k3s1", ready: true, readyText: "Ready=True: KubeletReady: kubelet is posting ready status", unschedulable: true });
  assert.equal(nodeNotReady(w2, TO), undefined);
  const down = parseNode(fixture("kubectl", "node-worker2-notready.json"));
  assert.equal(down.ready, false);
  assert.equal(nodeNotReady(down, TO), "worker2 is not Ready (Ready=Unknown: NodeStatusUnknown: Kubelet stopped posting node status.); worker2's kubelet runs v1.33.4+k3s1, not v1.33.5+k3s1");
  assert.equal(parseNode(fixture("kubectl", "node-master1.json")).unschedulable, false);
  assert.throws(() => parseNode(fixture("kubectl", "refused.txt")), /not a Node object as JSON/);
  assert.throws(() => parseNode('{"kind":"Pod","metadata":{"name":"x"}}'), /not a Node object/);
});

test("the probe's own script frames each answer (exit code, output) so the parser reads them back exactly", (t) => {
  const dir = tempDir(t);
  const files = { version: "version-v1.33.5.txt", readyz: "readyz.txt", refused: "refused.txt" } as const;
  for (const [k, f] of Object.entries(files)) writeFileSync(join(dir, k), fixture(f === "version-v1.33.5.txt" ? "k3s" : "kubectl", f));
  const node = join(dir, "node.json");
  writeFileSync(node, fixture("kubectl", "node-master1.json"));
  const cat = (f: string, code = 0): Command => script(`cat '${f}'${code ? `; exit ${code}` : ""}`, `cat ${f}`);
  const probe = probeCommand(
    [
      ["version", cat(join(dir, "version"))],
      ["readyz", cat(join(dir, "refused"), 1)],
      ["etcd", script(`printf '%s' '${fixture("etcd", "health.json")}'`, "health")],
      ["node", cat(node)],
    ],
    "test probe",
  );
  const r = spawnSync("bash", ["-c", probe.shell], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const parts = parseProbeParts(r.stdout);
  assert.deepEqual([...parts.keys()], ["version", "readyz", "etcd", "node"]);
  assert.equal(parts.get("version")!.stdout, fixture("k3s", "version-v1.33.5.txt").replace(/\n$/, ""));
  assert.deepEqual([parts.get("readyz")!.code, parts.get("readyz")!.stdout], [1, fixture("kubectl", "refused.txt").trim()]);
  assert.equal(parts.get("node")!.stdout, fixture("kubectl", "node-master1.json").trim());
  // the test helper's framing is the same as the script's
  assert.equal(probeAnswer({ version: ok(fixture("k3s", "version-v1.33.5.txt")), readyz: fail(1, fixture("kubectl", "refused.txt")), etcd: ok(fixture("etcd", "health.json")), node: ok(fixture("kubectl", "node-master1.json")) }).stdout, r.stdout);
  assert.equal(serverProbeVerdict("master1", r.stdout, TO), "API /readyz: The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?");
  assert.equal(serverProbeVerdict("master1", healthyServer("master1").stdout, TO), undefined);
  assert.equal(serverProbeVerdict("master1", healthyServer("master1", FROM).stdout, TO), "k3s --version: v1.33.4+k3s1, not v1.33.5+k3s1; master1's kubelet runs v1.33.4+k3s1, not v1.33.5+k3s1");
  const noQuorum = probeAnswer({ version: ok(fixture("k3s", "version-v1.33.5.txt")), readyz: ok(fixture("kubectl", "readyz.txt")), etcd: ok(fixture("etcd", "health-noquorum.json")), node: ok(fixture("kubectl", "node-master1.json")) });
  assert.equal(serverProbeVerdict("master1", noQuorum.stdout), "etcd member: etcd reports health false (no leader, an alarm, or no quorum)");
});

// --- the binary ------------------------------------------------------------------------------

test("the install: the target version where the node keeps K3s (Flatcar's /opt/bin, else /usr/local/bin); the spec's pinned checksum is not carried to another version; a bundle is uploaded", () => {
  const pinned = { ...ctx, spec: { ...ctx.spec, k3s: { ...ctx.spec.k3s, sha256: "a".repeat(64) } } };
  const c = upgradeBinaryCommand(pinned, TO, undefined);
  assert.equal(c.display, "install K3s v1.33.5+k3s1 in /opt/bin (Flatcar) or /usr/local/bin: downloaded by the node, checked against the release's sha256sum-amd64.txt");
  assert.match(c.shell, /^if grep -qs '\^ID=flatcar' \/etc\/os-release; then exec bash -c /);
  assert.equal((c.shell.match(/VERSION=/g) ?? []).length, 2, "one install script per place");
  assert.ok(c.shell.includes("v1.33.5+k3s1") && !c.shell.includes(ctx.spec.k3s.version));
  assert.ok(!c.shell.includes("a".repeat(64)), "the spec's sha256 is v1.33.4's");
  assert.ok(k3sBinaryCommand(pinned, ctx.spec.k3s.version, "/opt/bin", undefined).command.shell.includes("a".repeat(64)), "apply's own version keeps it");
  const syntax = spawnSync("bash", ["-n", "-c", c.shell], { encoding: "utf8" });
  assert.equal(syntax.status, 0, syntax.stderr);
  const bundle = { dir: "/b", binary: { path: "/b/k3s", sha256: "b".repeat(64), bytes: 70 * 1048576 } } as unknown as K3sBundle;
  const up = upgradeBinaryCommand(ctx, TO, bundle);
  assert.equal(up.upload, "/b/k3s");
  assert.match(up.display, /: from the bundle \/b, SHA-256 bbbbbbbbbbbb… checked on the node$/);
  assert.equal(spawnSync("bash", ["-n", "-c", up.shell]).status, 0);
});

// --- carried out -----------------------------------------------------------------------------

/** etcd as a server reads it through the fixtures (all healthy, or master3 down). */
async function etcdView(probe: string): Promise<EtcdClusterView> {
  return readCluster(new RecordingTransport("master1", [(c) => etcdAnswer(c, () => probe)]), etcdAccess());
}

const ETCD_READ = [
  "curl -sS --max-time 5 --cacert /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt --cert /var/lib/rancher/k3s/server/tls/etcd/client.crt --key /var/lib/rancher/k3s/server/tls/etcd/client.key -X POST -H 'Content-Type: application/json' -d '{}' https://127.0.0.1:2379/v3/cluster/member/list",
  "etcd health and status of https://10.250.9.1:2379, https://10.250.9.2:2379, https://10.250.9.3:2379",
];
const INSTALL = "install K3s v1.33.5+k3s1 in /opt/bin (Flatcar) or /usr/local/bin: downloaded by the node, checked against the release's sha256sum-amd64.txt";
const serverLog = (s: string) => [...ETCD_READ.map((c) => `${s}: ${c}`), `${s}: ${INSTALL}`, `${s}: systemctl restart k3s.service`, `${s}: k3s --version; k3s kubectl get --raw=/readyz; etcd /health; k3s kubectl get node ${s} -o json`];
const drainLog = (a: string) => `master1: k3s kubectl drain ${a} --ignore-daemonsets --delete-emptydir-data --timeout=300s`;
const agentLog = (a: string) => [`${a}: ${INSTALL}`, `${a}: systemctl restart k3s-agent.service`, `master1: k3s kubectl get node ${a} -o json`, `master1: k3s kubectl uncordon ${a}`];

interface Cluster {
  /** etcd's probe answer, by how many times it was asked before. */
  probe?: (n: number) => string;
  drain?: (node: string) => ReturnType<typeof ok> | undefined;
  node?: (node: string, n: number) => ReturnType<typeof ok>;
}

/** The seed's K3s nodes, answering as a healthy cluster that upgrades as asked, unless told otherwise. */
function cluster(o: Cluster = {}) {
  let probes = 0;
  return replay([...SERVERS, ...AGENTS], (host, c, seen) => {
    const etcd = etcdAnswer(c, () => (o.probe ?? (() => probeAllUp))(probes++));
    if (etcd) return etcd;
    if (c.display.startsWith("k3s --version; k3s kubectl get --raw=/readyz")) return healthyServer(host);
    const drain = /^k3s kubectl drain (\S+)/.exec(c.display);
    if (drain) return o.drain?.(drain[1]!) ?? ok(fixture("kubectl", "drain-worker1.txt").replaceAll("worker1", drain[1]!), fixture("kubectl", "drain-worker1.stderr.txt"));
    const get = /^k3s kubectl get node (\S+) -o json$/.exec(c.display);
    if (get) return o.node?.(get[1]!, seen) ?? agentNode(get[1]!, { ready: true });
    const un = /^k3s kubectl uncordon (\S+)$/.exec(c.display);
    if (un) return ok(fixture("kubectl", "uncordon-worker1.txt").replace("worker1", un[1]!));
    return undefined; // install, systemctl: exit 0, as they print nothing when they work
  });
}

test("carried out: each server re-checked, installed, restarted and waited for before the next; then per batch every agent drained before any is installed; uncordon last", async () => {
  const rb = upgradeRunbook(ctx, FROM, TO, await etcdView(probeAllUp), 2, { wait: quick });
  assert.ok(rb.ok);
  const { log, transports } = cluster();
  const out = await runRunbook(rb.steps, transports);
  assert.equal(out.failed, undefined, out.failed?.reason);
  assert.deepEqual(log, [
    ...serverLog("master1"),
    ...serverLog("master2"),
    ...serverLog("master3"),
    drainLog("worker1"),
    drainLog("worker2"),
    ...agentLog("worker1"),
    ...agentLog("worker2"),
    drainLog("worker3"),
    drainLog("storage1"),
    ...agentLog("worker3"),
    ...agentLog("storage1"),
  ]);
  const text = runbookText(rb.heading, rb.steps);
  assert.match(text, /^Upgrade K3s v1\.33\.4\+k3s1 -> v1\.33\.5\+k3s1: 3 server\(s\) one at a time, each healthy again before the next, then 4 agent\(s\) in batches of 2, drained first; it stops at the first failure\n/);
  assert.match(text, /^ {2}1\. read etcd again: restart master1 only if etcd keeps quorum\n {2}2\. install K3s v1\.33\.5\+k3s1 on master1 \(downloaded by the node, checked against the release's checksums\)\n {7}on master1: install K3s/m);
  assert.match(text, /^ {2}4\. wait until master1 answers: API \/readyz ok, its etcd member healthy, its node Ready with v1\.33\.5\+k3s1$/m);
  assert.match(text, /^ {2}13\. cordon and drain worker1 \(batch 1\)\n {7}on master1: k3s kubectl drain worker1 /m);
  assert.equal(rb.steps.length, 12 + 4 + 4 * 4);
});

test("refused before anything runs: a skipped minor version, a downgrade, or a server whose restart would lose quorum", async () => {
  assert.deepEqual(upgradeRunbook(ctx, FROM, "v1.35.0+k3s1", undefined, 1), { ok: false, text: "v1.33.4+k3s1 -> v1.35.0+k3s1 skips 1 minor version(s): Kubernetes upgrades one minor version at a time (v1.34.x first)" });
  const down = upgradeRunbook(ctx, FROM, "v1.33.3+k3s1", undefined, 1);
  assert.ok(!down.ok && /fmc does not downgrade K3s/.test(down.text));
  const oneDown = await etcdView(probeOneDown);
  assert.throws(() => upgradeRunbook(ctx, FROM, TO, oneDown, 1), /upgrading master1 restarts it: 3 members, quorum 2; 1 unhealthy \(master3\); stopping master1 leaves 1 healthy of 3 members, quorum 2: refused/);
});

test("a member lost after the plan: the re-check right before master2 restarts refuses, and nothing after it runs", async () => {
  const rb = upgradeRunbook(ctx, FROM, TO, await etcdView(probeAllUp), 1, { wait: quick });
  assert.ok(rb.ok);
  // healthy while master1 is checked, master3 gone by the time master2 is
  const { log, transports } = cluster({ probe: (n) => (n === 0 ? probeAllUp : probeOneDown) });
  const out = await runRunbook(rb.steps, transports);
  assert.equal(out.done, 4);
  assert.equal(out.failed!.step.title, "read etcd again: restart master2 only if etcd keeps quorum");
  assert.equal(out.failed!.reason, "refused: 3 members, quorum 2; 1 unhealthy (master3); stopping master2 leaves 1 healthy of 3 members, quorum 2: refused");
  assert.deepEqual(log, [...serverLog("master1"), ...ETCD_READ.map((c) => `master2: ${c}`)]);
});

test("a failing drain of worker2 stops the run: worker2 is never installed or restarted, nothing after it runs, the error names the step", async () => {
  const rb = upgradeRunbook(ctx, FROM, TO, await etcdView(probeAllUp), 2, { wait: quick });
  assert.ok(rb.ok);
  const { log, transports } = cluster({ drain: (n) => (n === "worker2" ? fail(1, fixture("kubectl", "drain-worker2-pdb.stderr.txt"), fixture("kubectl", "drain-worker2-pdb.txt")) : undefined) });
  const out = await runRunbook(rb.steps, transports);
  assert.equal(out.failed!.step.title, "cordon and drain worker2 (batch 1)");
  assert.deepEqual(log, [...serverLog("master1"), ...serverLog("master2"), ...serverLog("master3"), drainLog("worker1"), drainLog("worker2")]);
  assert.ok(!log.some((l) => l.startsWith("worker")), "no agent was touched");
  const text = stoppedText(rb.steps, out);
  assert.match(text, /^stopped at step 14 of 32 \(cordon and drain worker2 \(batch 1\)\) on master1: exit 1: [\s\S]*\nerror: error when evicting pods\/"web-6c9d7b8f4-8rj5d" -n "default": global timeout reached: 5m0s$/m);
  assert.match(text, /steps 1-13 are done; the 18 step\(s\) after it did not run$/);
});

test("a node that does not come back Ready with the new kubelet in time fails its wait; it stays cordoned and the next batch is not drained", async () => {
  const rb = upgradeRunbook(ctx, FROM, TO, await etcdView(probeAllUp), 1, { wait: quick });
  assert.ok(rb.ok);
  const { log, transports } = cluster({ node: (n) => agentNode(n, { ready: n !== "worker2" }) });
  const out = await runRunbook(rb.steps, transports);
  assert.equal(out.failed!.step.title, "wait until node worker2 is Ready with kubelet v1.33.5+k3s1");
  assert.match(out.failed!.reason, /^not done after 0\.05 s: worker2 is not Ready \(Ready=Unknown: NodeStatusUnknown: Kubelet stopped posting node status\.\); worker2's kubelet runs v1\.33\.4\+k3s1, not v1\.33\.5\+k3s1$/);
  const looks = log.filter((l) => l === "master1: k3s kubectl get node worker2 -o json").length;
  assert.ok(looks >= 2, `the wait looked again before giving up (${looks} looks)`);
  assert.ok(!log.includes("master1: k3s kubectl uncordon worker2") && !log.some((l) => l.includes("worker3")), log.join("\n"));
  const restarted = log.indexOf("worker2: systemctl restart k3s-agent.service");
  assert.ok(restarted > 0 && log.slice(restarted + 1).every((l) => l === "master1: k3s kubectl get node worker2 -o json"), "after worker2's restart, only its wait ran");
});
