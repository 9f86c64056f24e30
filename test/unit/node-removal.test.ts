// fmc node remove's plan on the seed: an agent needs no etcd; a server needs etcd's view
// and is refused with the arithmetic when quorum would be lost; the load balancers' and
// DNS's changes come from rendering the spec without the node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { nodeRemovalPlan, removalPlanText } from "../../src/ops/node-removal.js";
import type { EtcdClusterView, EtcdMemberView } from "../../src/ops/etcd.js";
import { contextFor } from "../helpers.js";

const ctx = contextFor();
const member = (n: number, healthy: boolean): EtcdMemberView => ({ id: String(1000 + n), name: `master${n}-0000000${n}`, node: `master${n}`, peerURLs: [`https://10.17.4.2${n}:2380`], clientURLs: [`https://10.17.4.2${n}:2379`], isLearner: false, started: true, healthy, isLeader: n === 1 });
const view = (...health: boolean[]): EtcdClusterView => {
  const members = health.map((h, i) => member(i + 1, h));
  return { members, leader: "1001", healthy: new Set(members.filter((m) => m.healthy).map((m) => m.id)) };
};

test("an agent: drain, stop k3s-agent, delete the node; both load balancers lose its ingress backends; its DNS record goes", () => {
  const p = nodeRemovalPlan(ctx, "worker1", undefined, "master1");
  assert.ok(p.ok);
  assert.deepEqual(p.steps.map((s) => s.title.split(/[ :]/)[0]), ["drain", "stop", "delete", "loadbalancer1", "loadbalancer2", "internal", "remove"]);
  assert.equal(p.steps[1]!.command, "systemctl disable --now k3s-agent");
  const lb = p.steps.find((s) => s.on === "loadbalancer1")!;
  const removed = lb.diff!.split("\n").filter((l) => l.startsWith("-") && !l.startsWith("---"));
  assert.ok(removed.length >= 2 && removed.every((l) => /server worker1 10\.17\.4\.24:30\d{3}/.test(l)), removed.join("\n"));
  assert.match(p.steps.find((s) => s.title.startsWith("internal DNS"))!.diff!, /^-worker1 A 10\.17\.4\.24$/m);
});

test("a server: refused with the arithmetic when another member is down; with all healthy, its etcd member is removed between the stop and the node's deletion", () => {
  const refused = nodeRemovalPlan(ctx, "master2", view(true, true, false), "master1");
  assert.equal(refused.ok, false);
  assert.equal(removalPlanText("master2", refused), "Removing master2 is refused: 3 members, quorum 2; 1 unhealthy (master3); removing master2 leaves 1 healthy of 2 members, quorum 2: refused\n");
  const ok = nodeRemovalPlan(ctx, "master2", view(true, true, true), "master1");
  assert.ok(ok.ok);
  const titles = ok.steps.map((s) => s.title);
  assert.ok(titles.indexOf("remove etcd member master2 (ID 1002)") === titles.indexOf("stop K3s on master2") + 1);
  assert.throws(() => nodeRemovalPlan(ctx, "master2", undefined, "master1"), /needs etcd's member list/);
  assert.throws(() => nodeRemovalPlan(ctx, "master1", view(true, true, true), "master1"), /cannot drain and remove itself/);
});

test("not a K3s node, or not in the spec: refused before anything is read", () => {
  assert.throws(() => nodeRemovalPlan(ctx, "loadbalancer1", undefined, "master1"), /loadbalancer1 is not a K3s node/);
  assert.throws(() => nodeRemovalPlan(ctx, "nosuch", undefined, "master1"), /nosuch: no such host in the spec/);
});
