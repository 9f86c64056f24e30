// fmc node remove on the seed: the plan (an agent needs no etcd; a server needs etcd's view and
// is refused with the arithmetic when quorum would be lost; the load balancers' and DNS's
// changes come from rendering the spec without the node), and the runbook carried out through
// transports that replay etcd's real gateway answers (test/fixtures/etcd, captured from a real
// etcd 3.4) and kubectl's output formats: the exact order across hosts, the re-check of quorum
// right before the member goes, and the stop at the first failure.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { followDiffs, joinPhases, nodeRemovalPlan, refusalText } from "../../src/runbooks/node-removal.js";
import { apply, plan } from "../../src/engine/run.js";
import { k3sAgents, k3sServers, K3S_SERVER_CA } from "../../src/phases/k3s.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import type { Transport } from "../../src/hosts/transport.js";
import { runRunbook, runbookText, stoppedText } from "../../src/runbooks/runbook.js";
import { RecordingTransport, type ExecResult } from "../../src/hosts/transport.js";
import type { Command } from "../../src/hosts/command.js";
import type { EtcdClusterView, EtcdMemberView } from "../../src/k3s/etcd.js";
import { contextFor, ROOT } from "../helpers.js";

const ctx = contextFor();
const member = (n: number, healthy: boolean): EtcdMemberView => ({ id: String(1000 + n), name: `master${n}-0000000${n}`, node: `master${n}`, peerURLs: [`https://10.17.4.2${n}:2380`], clientURLs: [`https://10.17.4.2${n}:2379`], isLearner: false, started: true, healthy, isLeader: n === 1 });
const view = (...health: boolean[]): EtcdClusterView => {
  const members = health.map((h, i) => member(i + 1, h));
  return { members, leader: "1001", healthy: new Set(members.filter((m) => m.healthy).map((m) => m.id)) };
};

test("an agent: drain, stop k3s-agent, delete the node; both load balancers lose its ingress backends; its DNS record goes", () => {
  const p = nodeRemovalPlan(ctx, "worker1", undefined, "master1");
  assert.ok(p.ok);
  assert.deepEqual(p.steps.map((s) => s.title.split(/[ :]/)[0]), ["drain", "stop", "delete"]);
  assert.equal(p.steps[1]!.command!.display, "systemctl disable --now k3s-agent");
  assert.equal(p.steps[0]!.command!.display, "k3s kubectl drain worker1 --ignore-daemonsets --delete-emptydir-data --timeout=300s");
  assert.deepEqual(p.follow.map((s) => s.on), ["loadbalancer1", "loadbalancer2", "freeipa1"]);
  const removed = p.follow[0]!.detail!.split("\n").filter((l) => l.startsWith("-") && !l.startsWith("---"));
  assert.ok(removed.length >= 2 && removed.every((l) => /server worker1 10\.17\.4\.24:30\d{3}/.test(l)), removed.join("\n"));
  assert.match(p.follow[2]!.detail!, /^-worker1 A 10\.17\.4\.24$/m);
});

test("a server: refused with the arithmetic when another member is down; with all healthy, its etcd member is removed between the stop and the node's deletion", () => {
  const refused = nodeRemovalPlan(ctx, "master2", view(true, true, false), "master1");
  assert.equal(refused.ok, false);
  assert.equal(refusalText("master2", refused.ok ? "" : refused.text), "Removing master2 is refused: 3 members, quorum 2; 1 unhealthy (master3); removing master2 leaves 1 healthy of 2 members, quorum 2: refused\n");
  const ok = nodeRemovalPlan(ctx, "master2", view(true, true, true), "master1");
  assert.ok(ok.ok);
  const titles = ok.steps.map((s) => s.title);
  assert.match(titles[0]!, /^read etcd again: remove master2 only if etcd keeps quorum/);
  assert.ok(titles.indexOf("remove etcd member master2 (ID 1002)") === titles.indexOf("stop and disable K3s on master2, so it cannot rejoin") + 1);
  assert.equal(titles.at(-1), "set master2's etcd data aside, so a later add joins afresh");
  assert.throws(() => nodeRemovalPlan(ctx, "master2", undefined, "master1"), /needs etcd's member list/);
  assert.throws(() => nodeRemovalPlan(ctx, "master1", view(true, true, true), "master1"), /cannot drain and remove itself/);
  // a dead server is not stopped (it cannot be): the step says it must stay off, and its data is not touched
  const dead = nodeRemovalPlan(ctx, "master2", view(true, true, true), "master1", false);
  assert.ok(dead.ok);
  assert.ok(dead.steps.every((s) => s.on !== "master2"));
});

test("not a K3s node, or not in the spec: refused before anything is read", () => {
  assert.throws(() => nodeRemovalPlan(ctx, "loadbalancer1", undefined, "master1"), /loadbalancer1 is not a K3s node/);
  assert.throws(() => nodeRemovalPlan(ctx, "nosuch", undefined, "master1"), /nosuch: no such host in the spec/);
  assert.deepEqual(followDiffs(ctx, "storage1").length > 0, true);
});

// --- carried out, against replayed answers --------------------------------------------------

const etcd = (name: string) => readFileSync(join(ROOT, "test/fixtures/etcd", name), "utf8");
const kube = (name: string) => readFileSync(join(ROOT, "test/fixtures/kubectl", name), "utf8");
/** The real capture with master3 down, and the same with master3 answering as master2 does (all healthy). */
const probeOneDown = etcd("probe-one-down.txt");
const probeAllUp = (() => {
  const lines = probeOneDown.trim().split("\n");
  const two = lines.filter((l) => l.includes("10.250.9.2:"));
  return [...lines.filter((l) => !l.includes("10.250.9.3:")), ...two.map((l) => l.replace("10.250.9.2:", "10.250.9.3:"))].join("\n") + "\n";
})();
const ok = (stdout: string): ExecResult => ({ code: 0, stdout, stderr: "" });

/** Transports for master1 (answers for etcd and kubectl) and master3 (the node removed); `log` is every command in order, host-tagged. */
function cluster(o: { probe: () => string; drain?: ExecResult }) {
  const log: string[] = [];
  const answer = (host: string) => (c: Command): ExecResult | undefined => {
    log.push(`${host}: ${c.display.split("\n")[0]}`);
    if (c.shell.endsWith("/v3/cluster/member/list")) return ok(etcd("member-list.json"));
    if (c.display.startsWith("etcd health and status")) return ok(o.probe());
    if (c.shell.includes("/v3/cluster/member/remove")) return ok(etcd("member-remove.json"));
    if (c.display.startsWith("k3s kubectl drain")) return o.drain ?? ok(kube("drain-master3.txt"));
    if (c.display.startsWith("k3s kubectl delete node")) return ok(kube("delete-node-master3.txt"));
    return ok("");
  };
  const transports = new Map([
    ["master1", new RecordingTransport("master1", [answer("master1")])],
    ["master3", new RecordingTransport("master3", [answer("master3")])],
  ]);
  return { log, transports };
}

/** master3 as the fixtures' etcd sees it (its member ID from the real capture). */
const captured: EtcdClusterView = (() => {
  const ids: Record<string, string> = { master1: "14174766230561539365", master2: "15686964746127964997", master3: "14143064171691677438" };
  const members = [1, 2, 3].map((n) => ({ ...member(n, true), id: ids[`master${n}`]!, name: `master${n}-x` }));
  return { members, healthy: new Set(members.map((m) => m.id)) };
})();

test("carried out: quorum re-read, drain, stop, member removal, node deletion, data aside: in that order, each on its host", async () => {
  const p = nodeRemovalPlan(ctx, "master3", captured, "master1");
  assert.ok(p.ok);
  const { log, transports } = cluster({ probe: () => probeAllUp });
  const out = await runRunbook(p.steps, transports);
  assert.equal(out.failed, undefined);
  assert.equal(out.done, p.steps.length);
  assert.deepEqual(log, [
    "master1: curl -sS --max-time 5 --cacert /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt --cert /var/lib/rancher/k3s/server/tls/etcd/client.crt --key /var/lib/rancher/k3s/server/tls/etcd/client.key -X POST -H 'Content-Type: application/json' -d '{}' https://127.0.0.1:2379/v3/cluster/member/list",
    "master1: etcd health and status of https://10.250.9.1:2379, https://10.250.9.2:2379, https://10.250.9.3:2379",
    "master1: k3s kubectl drain master3 --ignore-daemonsets --delete-emptydir-data --timeout=300s",
    "master3: systemctl disable --now k3s",
    `master1: curl -sS --max-time 5 --cacert /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt --cert /var/lib/rancher/k3s/server/tls/etcd/client.crt --key /var/lib/rancher/k3s/server/tls/etcd/client.key -X POST -H 'Content-Type: application/json' -d '{"ID":"14143064171691677438"}' https://127.0.0.1:2379/v3/cluster/member/remove`,
    "master1: k3s kubectl delete node master3",
    "master3: move /var/lib/rancher/k3s/server/db aside on master3 (/var/lib/rancher/k3s/server/db.removed-<time>)",
  ]);
  assert.match(runbookText("Removing master3:", p.steps), /^ {2}3\. stop and disable K3s on master3, so it cannot rejoin\n {7}on master3: systemctl disable --now k3s$/m);
});

test("carried out: a member that went down after the plan stops the run at the re-check; nothing is drained", async () => {
  const p = nodeRemovalPlan(ctx, "master2", captured, "master1");
  assert.ok(p.ok);
  const { log, transports } = cluster({ probe: () => probeOneDown });
  const out = await runRunbook(p.steps, transports);
  assert.equal(out.done, 0);
  assert.match(out.failed!.reason, /refused: 3 members, quorum 2; 1 unhealthy \(master3\); removing master2 leaves 1 healthy of 2 members/);
  assert.ok(log.every((l) => !l.includes("drain") && !l.includes("systemctl")), log.join("\n"));
});

test("carried out: a failed drain stops the run: K3s keeps running on the node and its member stays", async () => {
  const p = nodeRemovalPlan(ctx, "master3", captured, "master1");
  assert.ok(p.ok);
  const { log, transports } = cluster({ probe: () => probeAllUp, drain: { code: 1, stdout: "node/master3 cordoned\n", stderr: kube("drain-pdb-timeout.txt") } });
  const out = await runRunbook(p.steps, transports);
  assert.equal(out.done, 1);
  assert.equal(out.failed!.step.title, "drain master3: cordon it and evict its pods");
  const text = stoppedText(p.steps, out);
  assert.match(text, /^stopped at step 2 of 6 \(drain master3: cordon it and evict its pods\) on master1: exit 1: .*Cannot evict pod as it would violate the pod's disruption budget/s);
  assert.match(text, /step 1 is done; the 4 step\(s\) after it did not run$/);
  assert.ok(!log.some((l) => l.startsWith("master3:") || l.includes("member/remove") || l.includes("delete node")), log.join("\n"));
});

// --- fmc node add: the K3s phases on the node being added only --------------------------------

const b64 = (x: string) => Buffer.from(x).toString("base64");
const K3S_NODES = ["master1", "master2", "master3", "worker1", "worker2", "worker3", "storage1"];
/**
 * The fact script's answer for a K3s node: `fresh` has no K3s at all; the others run the pinned
 * K3s and are in the cluster, but every file fmc writes differs from the spec (drifted: fmc apply
 * would rewrite them and restart the node).
 */
function k3sFactsText(name: string, fresh: boolean): string {
  const unit = name.startsWith("master") ? "k3s.service" : "k3s-agent.service";
  const files = fresh ? [] : [`/etc/rancher/k3s/config.yaml 600 root root ${b64("token: drifted\n")}`, ...(name === "master1" ? [`${K3S_SERVER_CA} 644 root root ${b64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")}`] : [])];
  const g = (ok: boolean) => (ok ? 0 : 1);
  return [
    "@os", "ID=debian", 'VERSION_ID="12"', "@hostname", name, "@addr", "@swap",
    "@units", `Id=${unit}`, `ActiveState=${fresh ? "inactive" : "active"}`, `UnitFileState=${fresh ? "not-found" : "enabled"}`, "",
    "@packages", "@sysctl", "@files", ...files, "@dirs", "@users",
    "@guard", `k3s-binary-present ${g(!fresh)}`, `k3s-binary-current ${g(!fresh)}`, `k3s-etcd-member ${g(!fresh)}`, `k3s-agent-joined ${g(!fresh)}`,
    "@end",
  ].join("\n") + "\n";
}

async function addNode(name: string, server: boolean) {
  const token = "abcdef.0123456789abcdef";
  const pc: PhaseContext = {
    render: { ...ctx, k3sBootstrapped: true },
    mask: (x) => ctx.secrets.mask(x),
    loginUser: () => "root",
    k3s: { bundle: () => undefined, joinToken: token, joinTokenTtlMin: 60, markBootstrapped: () => undefined, forgetBootstrap: () => false },
  };
  const transports = new Map<string, RecordingTransport>(K3S_NODES.map((h) => [h, new RecordingTransport(h, [(c) => (c.display === "read facts" ? { code: 0, stdout: k3sFactsText(h, h === name), stderr: "" } : undefined)])]));
  const phases = joinPhases(name, server, [k3sServers, k3sAgents]);
  const p = await plan(pc, phases, transports as Map<string, Transport>, { concurrency: 4 });
  await apply(p, transports as Map<string, Transport>, { concurrency: 4 });
  /** What ran on each node besides reading its facts. */
  const ran = (h: string) => transports.get(h)!.log.filter((c) => c.display !== "read facts").map((c) => c.display);
  // the whole cluster as fmc apply plans it: every other node would be rewritten and restarted
  const full = await plan(pc, [k3sServers, k3sAgents], transports as Map<string, Transport>, { concurrency: 4 });
  return { p, ran, full };
}

test("node add worker3: K3s is installed and started on worker3 alone; the only other change is its bootstrap token on master1; drifted nodes are not restarted", async () => {
  const { p, ran, full } = await addNode("worker3", false);
  assert.ok(full.changes.some((c) => c.host === "master2" && /restart/.test(c.title)), "the setting: master2 has drifted, and fmc apply would restart it");
  assert.deepEqual([...new Set(p.changes.map((c) => c.host))].sort(), ["master1", "worker3"]);
  assert.ok(ran("worker3").some((d) => /start k3s-agent\.service/.test(d)), ran("worker3").join("\n"));
  assert.deepEqual(ran("master1"), ["k3s kubectl apply -f - (the bootstrap-token Secret k3s token create writes, on stdin)"]);
  for (const h of ["master2", "master3", "worker1", "worker2", "storage1"]) assert.deepEqual(ran(h), [], `${h} was changed`);
});

test("node add master3: only master3 is installed, started and waited for; no token, nothing on the other servers or agents", async () => {
  const { p, ran } = await addNode("master3", true);
  assert.deepEqual([...new Set(p.changes.map((c) => c.host))], ["master3"]);
  assert.ok(ran("master3").some((d) => /start k3s\.service/.test(d)), ran("master3").join("\n"));
  for (const h of K3S_NODES.filter((x) => x !== "master3")) assert.deepEqual(ran(h), [], `${h} was changed`);
});
