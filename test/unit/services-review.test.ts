// The in-cluster and storage review of issue 20, each as the rendered result: the shared NFS
// export squashes root, node-exporter reaches the tainted servers, Grafana's RWO volume is
// never wanted by two pods, kured reboots inside its window and never the storage host, and
// services that replicate themselves sit on a 1-replica Longhorn class.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { renderAll } from "../../src/render/index.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { loadSpec } from "../../src/model/load.js";
import type { ClusterContext } from "../../src/state/context.js";
import { contextFor, ROOT } from "../helpers.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML
type Any = any;
const seed = contextFor();
const artifact = (ctx: ClusterContext, path: string) => renderAll(ctx).find((a) => a.path === path)?.content ?? assert.fail(`${path} not rendered`);
const objects = (ctx: ClusterContext): Any[] => renderAll(ctx).filter((a) => a.path.startsWith("kubernetes/")).flatMap((a) => parseAllDocuments(a.content).map((d) => d.toJS()));
const chartValuesOf = (ctx: ClusterContext, name: string): Any => parseYaml(objects(ctx).find((o) => o.kind === "HelmChart" && o.metadata.name === name).spec.valuesContent);
const withWindow = (w: string) => SEED_YAML.replace("coordinator: kured ", `coordinator: kured, window: ${w} }`).replace("reboots:\n    coordinator", "reboots: { coordinator");

test("NFS: the shared export squashes root, PostgreSQL's keeps no_root_squash for the database host only; squashed root may create volume directories", () => {
  const exports = artifact(seed, "storage/storage1/exports");
  const line = (path: string) => exports.split("\n").find((l) => l.startsWith(`${path} `)) ?? assert.fail(`no ${path}`);
  assert.match(line("/srv/nfs/shared"), /^\/srv\/nfs\/shared 10\.17\.4\.0\/24\(([^)]*)\)$/);
  const shared = /\(([^)]*)\)/.exec(line("/srv/nfs/shared"))![1]!.split(",");
  assert.ok(shared.includes("root_squash") && !shared.includes("no_root_squash"), shared.join(","));
  assert.equal(line("/srv/nfs/postgresql"), "/srv/nfs/postgresql 10.17.3.14(rw,sync,no_subtree_check,no_root_squash)");
  const dropIn = artifact(seed, "storage/storage1/nfs-server.service.d/fmc.conf");
  assert.match(dropIn, /^ExecStartPre=\/bin\/chown 65534:65534 \/srv\/nfs\/shared$/m);
  assert.match(dropIn, /^RequiresMountsFor=.*\/srv\/nfs\/shared/m, "chowned once mounted");
});

test("node-exporter tolerates the servers' CriticalAddonsOnly taint, so Prometheus scrapes the servers too", () => {
  const k3s = parseYaml(artifact(seed, "k3s/master1/config.yaml"));
  const [key, rest] = (k3s["node-taint"] as string[]).find((t) => t.startsWith("CriticalAddonsOnly"))!.split("=");
  const [value, effect] = rest!.split(":");
  const tolerations: Any[] = chartValuesOf(seed, "prometheus")["prometheus-node-exporter"].tolerations;
  const tolerates = (t: Any) => (t.operator === "Exists" && (!t.key || t.key === key) && (!t.effect || t.effect === effect)) || (t.key === key && t.value === value && (!t.effect || t.effect === effect));
  assert.ok(tolerations.some(tolerates), JSON.stringify(tolerations));
  // and still the storage node's NoSchedule taint (the subchart's own default)
  assert.ok(tolerations.some((t) => t.operator === "Exists" && t.effect === "NoSchedule"));
});

test("Grafana is replaced, not rolled: its ReadWriteOnce volume can't attach to two pods", () => {
  const claim = objects(seed).find((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === "grafana");
  assert.deepEqual(claim.spec.accessModes, ["ReadWriteOnce"]);
  assert.equal(chartValuesOf(seed, "grafana").deploymentStrategy.type, "Recreate");
});

test("kured: reboots only on the window's days and hours, and never on the storage host", () => {
  const ctx = contextFor(withWindow('{ days: [sa, su], start: "02:00", end: "05:00", timeZone: Europe/Madrid }'));
  const cfg = chartValuesOf(ctx, "kured").configuration;
  assert.deepEqual([cfg.rebootDays, cfg.startTime, cfg.endTime, cfg.timeZone], [["sa", "su"], "02:00", "05:00", "Europe/Madrid"]);
  // the chart turns these into kured's flags (kubereboot/charts templates/daemonset.yaml: --reboot-days per item, --start-time, --end-time, --time-zone)
  const chart = parseYaml(readFileSync(join(ROOT, "test/fixtures/kured-values-6.1.0.yaml"), "utf8"));
  for (const k of ["rebootDays", "startTime", "endTime", "timeZone"]) assert.ok(k in chart.configuration, k);
  assert.ok(loadSpec(withWindow('{ days: [someday], start: "02:00", end: "05:00" }')).problems.some((p) => p.path.startsWith("k3s.reboots.window.days")));
  assert.equal(chartValuesOf(seed, "kured").configuration.rebootDays, undefined, "no window: any day");
  // which nodes kured's DaemonSet may run on: its affinity against each node's labels, its tolerations against its taints
  const values = chartValuesOf(seed, "kured");
  const terms: Any[] = values.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
  const runsOn = (node: string) => {
    const cfg = parseYaml(artifact(seed, `k3s/${node}/config.yaml`));
    const labels = Object.fromEntries(((cfg["node-label"] ?? []) as string[]).map((l) => l.split("=")));
    const affinity = terms.some((t) => t.matchExpressions.every((e: Any) => (e.operator === "DoesNotExist" ? !(e.key in labels) : e.operator === "Exists" ? e.key in labels : false)));
    const taints = ((cfg["node-taint"] ?? []) as string[]).filter((t) => /:(NoSchedule|NoExecute)$/.test(t));
    const tolerated = taints.every((t) => values.tolerations.some((x: Any) => `${x.key}=${x.value}:${x.effect}` === t));
    return affinity && tolerated;
  };
  assert.deepEqual(["master1", "master2", "master3", "worker1", "worker2", "worker3", "storage1"].filter(runsOn), ["master1", "master2", "master3", "worker1", "worker2", "worker3"]);
});

test("services that replicate themselves use a 1-replica Longhorn class; the others keep Longhorn's replicas", () => {
  const all = objects(seed);
  const single = all.find((o) => o.kind === "StorageClass" && o.provisioner === "driver.longhorn.io");
  assert.ok(single, "a Longhorn StorageClass of fmc's");
  assert.equal(single.parameters.numberOfReplicas, "1");
  const es = all.find((o) => o.kind === "Elasticsearch");
  assert.ok(es.spec.nodeSets[0].count >= 2);
  assert.equal(es.spec.nodeSets[0].volumeClaimTemplates[0].spec.storageClassName, single.metadata.name);
  assert.equal(all.find((o) => o.kind === "KafkaNodePool").spec.storage.volumes[0].class, single.metadata.name);
  assert.equal(chartValuesOf(seed, "redis-ha").persistentVolume.storageClass, single.metadata.name);
  // one copy of its own is not replication: a single Elasticsearch node keeps Longhorn's replicas
  const lone = contextFor(readFileSync(join(ROOT, "examples/single-server/cluster.yaml"), "utf8"));
  const loneEs = objects(lone).find((o) => o.kind === "Elasticsearch");
  if (loneEs && loneEs.spec.nodeSets[0].count < 2) assert.notEqual(loneEs.spec.nodeSets[0].volumeClaimTemplates[0].spec.storageClassName, single.metadata.name);
  // Prometheus and Grafana have one copy each: Longhorn's default class
  for (const name of ["prometheus-server", "grafana"]) assert.equal(all.find((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === name).spec.storageClassName, "longhorn");
});
