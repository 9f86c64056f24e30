// fmc restore etcd in the lab (test/fixtures/lab-k3s.yaml): K3s can't run here, so the lab's
// stand-in `k3s` (src/lab/k3s-standin.ts) does K3s's part over a real three-member etcd: a
// `--cluster-reset --cluster-reset-restore-path` restores the snapshot with this machine's
// etcdctl into a fresh one-member cluster and exits as K3s does; the other servers, their
// database set aside, join it again. Checked on the real etcd afterwards: three healthy
// members, the key written before the snapshot back, the changes made after it gone. Also: a
// damaged snapshot is refused with nothing stopped, and the stand-in's kubectl node verbs
// answer in kubectl's words. Needs root; one lab, torn down in `after` whatever happens.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fmc, until, upK3sLab } from "../helpers.js";
import { labExec } from "../../src/lab/lab.js";
import { cmd } from "../../src/hosts/command.js";
import { etcdAccess, K3S_ETCD, parseRangeValue, rangeCommand, type EtcdMember } from "../../src/ops/etcd.js";

let dir = "";
const run = (...args: string[]) => fmc([...args], dir);
// the prefix k3s.test.ts's stale-lab check also knows
const PREFIX = join(tmpdir(), "fmc-k3s-e2e-restore-");
let ours = false;
let applied: ReturnType<typeof run> | undefined;
const SERVERS = ["master1", "master2", "master3"];
const NODES = [...SERVERS, "worker1", "worker2"];
const t0 = performance.now();

/** A key written, read or deleted through etcd's JSON gateway with K3s's client certificate, as src/ops/etcd.ts reads it. */
const gateway = (host: string, method: "put" | "deleterange", body: Record<string, string>) => {
  const b = Object.fromEntries(Object.entries(body).map(([k, v]) => [k, Buffer.from(v).toString("base64")]));
  const c = cmd("curl", "-sS", "--max-time", "5", "--cacert", K3S_ETCD.caFile, "--cert", K3S_ETCD.certFile, "--key", K3S_ETCD.keyFile, "-X", "POST", "-d", JSON.stringify(b), `${K3S_ETCD.endpoint}/v3/kv/${method}`);
  const r = labExec(host, ["sh", "-c", c.shell]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /"header"/, r.stdout);
};
const read = (host: string, key: string) => {
  const r = labExec(host, ["sh", "-c", rangeCommand(etcdAccess(), key).shell]);
  assert.equal(r.status, 0, r.stderr);
  return parseRangeValue(r.stdout);
};
const kubectl = (host: string, ...args: string[]) => labExec(host, ["k3s", "kubectl", ...args]);
type Node = { metadata: { name: string; labels: Record<string, string> }; spec: { unschedulable?: boolean; taints?: Array<{ key: string; effect: string }> }; status: { conditions: Array<{ type: string; status: string; reason: string }>; nodeInfo: { kubeletVersion: string } } };
const getNode = (name: string): Node | undefined => {
  const r = kubectl("master1", "get", "node", name, "-o", "json");
  return r.status === 0 ? (JSON.parse(r.stdout) as Node) : undefined;
};
const ready = (n: Node | undefined) => n?.status.conditions.find((c) => c.type === "Ready")?.status;
const active = (host: string) => labExec(host, ["systemctl", "is-active", "k3s"]).stdout.trim();
type Member = EtcdMember & { healthy: boolean; isLeader: boolean };
const members = (): Member[] | undefined => {
  const j = run("etcd", "status", "--json");
  return j.stdout ? (JSON.parse(j.stdout) as { members: Member[] }).members : undefined;
};

before(() => {
  dir = mkdtempSync(PREFIX);
  const lab = upK3sLab(dir);
  assert.equal(lab.up.status, 0, lab.up.stderr);
  ours = true;
  applied = lab.applied;
});

after(() => {
  const down = ours ? run("lab", "down", "--force") : { status: 0, stderr: "" };
  rmSync(dir, { recursive: true, force: true });
  console.log(`# k3s-restore.test.ts: ${((performance.now() - t0) / 1000).toFixed(1)} s with lab up, apply and lab down`);
  assert.equal(down.status, 0, down.stderr);
});

test("every K3s node registers while its unit runs: kubectl get node -o json answers a Node, Ready, the stand-in's version, servers with their role labels", async () => {
  assert.equal(applied!.status, 0, applied!.stdout + applied!.stderr);
  for (const name of NODES) {
    const n = await until(`${name} registered and Ready`, () => (ready(getNode(name)) === "True" ? getNode(name) : undefined), 60_000, 1000);
    assert.equal(n.metadata.name, name);
    assert.equal(n.status.nodeInfo.kubeletVersion, "v1.33.4+k3s1");
    assert.equal(n.metadata.labels["node-role.kubernetes.io/control-plane"], name.startsWith("master") ? "true" : undefined);
    assert.equal(n.spec.unschedulable, undefined);
  }
  const missing = kubectl("master2", "get", "node", "nosuch", "-o", "json");
  assert.equal(missing.status, 1);
  assert.equal(missing.stderr, 'Error from server (NotFound): nodes "nosuch" not found\n');
});

test("kubectl's node verbs in kubectl's words: cordon, uncordon, drain with fmc's flags, delete node; an unknown node is NotFound", () => {
  const say = (host: string, ...args: string[]) => {
    const r = kubectl(host, ...args);
    return `${r.status} ${r.stdout}${r.stderr}`;
  };
  assert.equal(say("master1", "cordon", "worker1"), "0 node/worker1 cordoned\n");
  assert.equal(say("master2", "cordon", "worker1"), "0 node/worker1 already cordoned\n");
  const cordoned = getNode("worker1")!;
  assert.equal(cordoned.spec.unschedulable, true);
  assert.deepEqual(cordoned.spec.taints, [{ effect: "NoSchedule", key: "node.kubernetes.io/unschedulable" }]);
  assert.equal(say("master3", "uncordon", "worker1"), "0 node/worker1 uncordoned\n");
  assert.equal(getNode("worker1")!.spec.unschedulable, undefined);
  // the drain fmc node remove runs (src/ops/node-removal.ts): no pods in the lab, so cordon and done
  assert.equal(say("master1", "drain", "worker1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s"), "0 node/worker1 cordoned\nnode/worker1 drained\n");
  assert.equal(getNode("worker1")!.spec.unschedulable, true);
  assert.equal(say("master1", "uncordon", "worker1"), "0 node/worker1 uncordoned\n");
  for (const verb of [["cordon"], ["uncordon"], ["drain", "--ignore-daemonsets"], ["delete", "node"]]) {
    assert.equal(say("master1", ...verb, "nosuch"), '1 Error from server (NotFound): nodes "nosuch" not found\n', verb.join(" "));
  }
});

test("fmc restore etcd: a damaged snapshot or one without its .sha256 is refused with nothing stopped; the snapshot restored brings back what it held and drops what came after", async () => {
  const FIRST = "/fmc/restore-test/first";
  const LATER = "/fmc/restore-test/later";
  gateway("master2", "put", { key: FIRST, value: "written before the snapshot" });
  const backups = join(dir, "etcd-backups");
  const b = run("backup", "etcd", "-o", backups);
  assert.equal(b.status, 0, b.stderr);
  const file = b.stdout.trim();
  // what happens after the snapshot: a key written, the first deleted, a node cordoned and one deleted
  gateway("master3", "put", { key: LATER, value: "written after the snapshot" });
  gateway("master1", "deleterange", { key: FIRST });
  assert.equal(read("master2", FIRST), undefined);
  assert.equal(kubectl("master1", "cordon", "worker1").stdout, "node/worker1 cordoned\n");
  assert.equal(kubectl("master1", "delete", "node", "worker2").stdout, 'node "worker2" deleted\n');
  assert.equal(getNode("worker2"), undefined);

  // refused before anything: a flipped byte, a missing .sha256
  const bad = join(dir, "damaged");
  mkdirSync(bad);
  const copy = join(bad, basename(file));
  const bytes = readFileSync(file);
  const mid = Math.floor(bytes.length / 2);
  bytes[mid] = bytes[mid]! ^ 0xff;
  writeFileSync(copy, bytes);
  copyFileSync(`${file}.sha256`, `${copy}.sha256`);
  const refused = run("restore", "etcd", copy, "--yes");
  assert.equal(refused.status, 1, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /error\[BACKUP_CHECKSUM\] .* does not match its checksum \(SHA-256 [0-9a-f]{64}, .*\.sha256 says [0-9a-f]{64}\): refusing to restore it/);
  rmSync(`${copy}.sha256`);
  const unchecked = run("restore", "etcd", copy, "--yes");
  assert.equal(unchecked.status, 1);
  assert.match(unchecked.stderr, /error\[BACKUP_CHECKSUM\] .* has no .*\.sha256 beside it: refusing to restore a snapshot that cannot be checked/);
  for (const s of SERVERS) assert.equal(active(s), "active", `${s}: k3s still runs`);
  assert.equal(read("master1", LATER), "written after the snapshot", "nothing was restored");

  // --plan: the order, nothing done
  const plan = run("restore", "etcd", file, "--plan");
  assert.equal(plan.status, 0, plan.stderr);
  const order = [...plan.stdout.matchAll(/^ {2}\d+\. (.*)$/gm)].map((m) => m[1]!.split(/[ :]/).slice(0, 2).join(" "));
  const name = basename(file);
  assert.deepEqual(order, [`check ${name}`, `upload ${name}`, "stop K3s", "stop K3s", "stop K3s", `restore ${name}`, "start K3s", "wait until", "set master2's", "start K3s", "wait until", "set master3's", "start K3s", "wait until", "read etcd"]);
  assert.match(plan.stdout, /^ {7}on master1: \/usr\/local\/bin\/k3s server --cluster-reset --cluster-reset-restore-path=\/var\/lib\/rancher\/k3s\/server\/db\/snapshots\/fmc-\S+ --server=$/m);
  assert.match(plan.stdout, /agents worker1, worker2 keep running/);
  for (const s of SERVERS) assert.equal(active(s), "active");

  const started = performance.now();
  const r = run("restore", "etcd", file, "--yes");
  const seconds = (performance.now() - started) / 1000;
  console.log(`# fmc restore etcd (3 servers): ${seconds.toFixed(1)} s`);
  if (r.status !== 0) {
    // what the servers say, for the failure's reader
    for (const s of SERVERS) console.log(`# ${s}:\n${labExec(s, ["sh", "-c", "journalctl -u k3s --no-pager -n 40; tail -n 20 /var/lib/rancher/k3s/server/db/reset-etcd.log"]).stdout.replace(/^/gm, "#   ")}`);
  }
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^Done: 15 steps in \d+\.\d s\.$/m);
  assert.match(r.stderr, /etcd: 3 healthy voting members \(master1( leader)?, master2( leader)?, master3( leader)?\)/);

  // etcd as fmc reads it, and the data
  const ms = await until("three healthy members", () => {
    const m = members();
    return m && m.length === 3 && m.every((x) => x.healthy && !x.isLearner) ? m : undefined;
  }, 30_000, 1000);
  assert.deepEqual(ms.map((m) => m.node).sort(), SERVERS);
  assert.equal(run("etcd", "status").status, 0);
  for (const s of SERVERS) {
    assert.equal(read(s, FIRST), "written before the snapshot", `${s} reads the key the snapshot held`);
    assert.equal(read(s, LATER), undefined, `${s}: the key written after the snapshot is gone`);
  }
  // the Nodes as the snapshot held them: worker2 is back, worker1 not cordoned
  const w2 = await until("worker2 Ready again", () => (ready(getNode("worker2")) === "True" ? getNode("worker2") : undefined), 30_000, 1000);
  assert.equal(w2.metadata.name, "worker2");
  assert.equal(getNode("worker1")!.spec.unschedulable, undefined);

  // what K3s leaves: the reset server's old data in db/etcd-old-<time>, no reset-flag after the
  // normal start; the others' databases set aside, whole
  const ls = (host: string, path: string) => labExec(host, ["ls", "-1", path]).stdout.split("\n").filter(Boolean);
  assert.ok(ls("master1", "/var/lib/rancher/k3s/server/db").some((f) => /^etcd-old-\d+$/.test(f)), ls("master1", "/var/lib/rancher/k3s/server/db").join(" "));
  assert.ok(!ls("master1", "/var/lib/rancher/k3s/server/db").includes("reset-flag"));
  for (const s of ["master2", "master3"]) {
    const aside = ls(s, "/var/lib/rancher/k3s/server").filter((f) => /^db\.before-restore-\d{8}T\d{6}Z$/.test(f));
    assert.equal(aside.length, 1, s);
    assert.ok(ls(s, `/var/lib/rancher/k3s/server/${aside[0]}/etcd`).includes("member"), `${s}: its old member data is kept`);
  }
  // the servers as apply sees them: nothing to do
  const again = run("plan", "--detailed-exitcode", "--phase", "k3s-servers,k3s-agents");
  assert.equal(again.status, 0, again.stdout + again.stderr);
  assert.ok(readdirSync(backups).includes(basename(file)));
});
