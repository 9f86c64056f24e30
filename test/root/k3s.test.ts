// K3s in the lab (test/fixtures/lab-k3s.yaml): K3s can't run here, so `fmc lab up` ships a
// stand-in `k3s` in the lab's bundle (src/lab/k3s-standin.ts) and `fmc apply` installs it exactly
// as it installs a release: uploaded, SHA-256 checked on the node, fmc's units, servers one
// at a time with the first bootstrapping, agents with bootstrap tokens. Underneath the
// servers runs a real etcd laid out as K3s's embedded etcd (K3s's TLS paths, member names,
// unit k3s.service): `fmc etcd status` reads it the way it reads K3s, and the quorum
// arithmetic decides on what that real three-member etcd reports. fmc restore etcd: the
// stand-in's `--cluster-reset --cluster-reset-restore-path` restores the snapshot with this
// machine's etcdctl into a fresh one-member cluster and exits as K3s does; the other servers,
// their database set aside, join it again; checked on the real etcd afterwards. Needs root;
// one lab for the file.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fmc, upK3sLab, until } from "../helpers.js";
import { labExec } from "../../src/lab/lab.js";
import { cmd } from "../../src/hosts/command.js";
import { etcdAccess, K3S_ETCD, parseRangeValue, quorumCheck, rangeCommand, type EtcdMember } from "../../src/k3s/etcd.js";

let dir = "";
const run = (...args: string[]) => fmc([...args], dir);
const PREFIX = join(tmpdir(), "fmc-k3s-e2e-");
let ours = false;
let applied: ReturnType<typeof run> | undefined;
const K3S_PHASES = ["--phase", "k3s-servers,k3s-agents"];

type Member = EtcdMember & { healthy: boolean; isLeader: boolean };
function status(): { code: number | null; text: string; members: Member[]; askedVia: string } {
  const t = run("etcd", "status");
  const j = run("etcd", "status", "--json");
  const parsed = JSON.parse(j.stdout) as { members: Member[]; askedVia: string };
  return { code: t.status, text: t.stdout, members: parsed.members, askedVia: parsed.askedVia };
}
const healthySet = (ms: Member[]) => new Set(ms.filter((m) => m.healthy).map((m) => m.id));

// (was k3s-restore.test.ts, which built a K3s lab of its own for these)
const SERVERS = ["master1", "master2", "master3"];
const NODES = [...SERVERS, "worker1", "worker2"];

/** A key written, read or deleted through etcd's JSON gateway with K3s's client certificate, as src/k3s/etcd.ts reads it. */
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
const members = (): Member[] | undefined => {
  const j = run("etcd", "status", "--json");
  return j.stdout ? (JSON.parse(j.stdout) as { members: Member[] }).members : undefined;
};


before(() => {
  dir = mkdtempSync(PREFIX);
  const lab = upK3sLab(dir);
  assert.equal(lab.up.status, 0, lab.up.stderr);
  ours = true;
  assert.match(lab.up.stderr, /K3s stand-in \(real etcd underneath, k3s\.service\) for master1, master2, master3: fmc apply installs it from /);
  applied = lab.applied;
});

test("fmc apply installs K3s servers one at a time, the first bootstrapping, each waited for; agents after; a re-plan has nothing to do", () => {
  assert.equal(applied!.status, 0, applied!.stdout + applied!.stderr);
  const lines = applied!.stderr.split("\n");
  const at = (re: RegExp) => {
    const i = lines.findIndex((l) => re.test(l));
    assert.ok(i >= 0, `no line ${re} in:\n${applied!.stderr}`);
    return i;
  };
  // the binary came from the bundle and was checked on the node
  at(/\[master1\] k3s-servers: install K3s v1\.33\.4\+k3s1 in \/usr\/local\/bin \(from the bundle .*k3s-bundle-v1\.33\.4\+k3s1, SHA-256 [0-9a-f]{12}… checked on the node\)/);
  const boot = at(/\[master1\] k3s-servers: wait for master1 \(bootstraps the cluster\), then record that the cluster exists/);
  const start2 = at(/\[master2\] k3s-servers: enable, start k3s\.service/);
  const wait2 = at(/\[master2\] k3s-servers: wait for master2 before the next server/);
  const start3 = at(/\[master3\] k3s-servers: enable, start k3s\.service/);
  const agents = at(/^phase k3s-agents: 2 hosts/);
  assert.ok(boot < start2 && wait2 < start3 && start3 < agents, "servers one at a time, each waited for, then the agents");
  // the bootstrap is recorded; from then on the first server joins through the VIP like the others
  const marker = JSON.parse(readFileSync(join(dir, ".fmc/lab/k3s-bootstrapped.json"), "utf8")) as { cluster: string; firstServer: string };
  assert.deepEqual([marker.cluster, marker.firstServer], ["k3stest", "master1"]);
  for (const m of ["master1", "master2", "master3"]) {
    const cfg = labExec(m, ["cat", "/etc/rancher/k3s/config.yaml"]).stdout;
    assert.doesNotMatch(cfg, /cluster-init/, m);
    assert.match(cfg, /^server: https:\/\/10\.34\.4\.10:6443$/m, m);
    assert.equal(labExec(m, ["stat", "-c", "%a", "/etc/rancher/k3s/config.yaml"]).stdout.trim(), "600");
  }
  assert.equal(labExec("worker1", ["systemctl", "is-active", "k3s-agent"]).stdout.trim(), "active");
  const again = run("plan", "--detailed-exitcode", ...K3S_PHASES);
  assert.equal(again.status, 0, again.stdout + again.stderr);
});

test("agents joined with a bootstrap token that expires and pins the cluster CA; the secret never shows in the output", () => {
  const ca = labExec("master1", ["cat", "/var/lib/rancher/k3s/server/tls/server-ca.crt"]).stdout;
  const cfg = labExec("worker2", ["cat", "/etc/rancher/k3s/config.yaml"]).stdout;
  const m = /^token: K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})$/m.exec(cfg);
  assert.ok(m, cfg.replace(/token: .*/, "token: (hidden)"));
  assert.equal(m[1], createHash("sha256").update(ca).digest("hex"), "the token pins the CA the servers serve");
  // the Secret k3s token create writes, in the cluster's etcd (the stand-in's API store)
  const tls = "/var/lib/rancher/k3s/server/tls/etcd";
  const got = labExec("master3", ["sh", "-c", `ETCDCTL_API=3 /usr/local/lib/fmc-lab/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=${tls}/server-ca.crt --cert=${tls}/client.crt --key=${tls}/client.key get --print-value-only /registry/secrets/kube-system/bootstrap-token-${m[2]}`]);
  const secret = JSON.parse(got.stdout) as { type: string; stringData: Record<string, string> };
  assert.equal(secret.type, "bootstrap.kubernetes.io/token");
  assert.equal(secret.stringData["token-secret"], m[3]);
  const left = (Date.parse(secret.stringData.expiration!) - Date.now()) / 60_000;
  assert.ok(left > 30 && left <= 60, `expires in ${left.toFixed(1)} min`);
  assert.equal(secret.stringData["auth-extra-groups"], "system:bootstrappers:k3s:default-node-token");
  assert.ok(!applied!.stdout.includes(m[3]!) && !applied!.stderr.includes(m[3]!), "the token's secret is masked in apply's output");
  // both agents joined with the same run's token; the two agents did not each make one
  assert.match(labExec("worker1", ["cat", "/etc/rancher/k3s/config.yaml"]).stdout, new RegExp(`::${m[2]}\\.`));
});

test("fmc plan --phase k3s-agents alone still reads the servers it pins (their CA), and has nothing to do", () => {
  const p = run("plan", "--detailed-exitcode", "--phase", "k3s-agents");
  assert.equal(p.status, 0, p.stdout + p.stderr);
  assert.match(p.stderr, /\[master1\] facts read/);
  assert.match(p.stderr, /\[worker1\] facts read/);
});

test("a bundle whose binary changed is refused before anything is touched", () => {
  const bin = join(dir, ".fmc/lab/k3s-bundle-v1.33.4+k3s1/k3s");
  const orig = readFileSync(bin);
  writeFileSync(bin, Buffer.concat([orig, Buffer.from("\n# tampered\n")]));
  try {
    const p = run("plan", ...K3S_PHASES);
    assert.notEqual(p.status, 0);
    assert.match(p.stderr, /error\[BUNDLE\] the K3s bundle in .* can't be used: k3s has \d+ bytes, the manifest says \d+/);
  } finally {
    writeFileSync(bin, orig);
  }
  assert.equal(run("plan", "--detailed-exitcode", ...K3S_PHASES).status, 0);
});

after(() => {
  const down = ours ? run("lab", "down", "--force") : { status: 0, stderr: "" };
  rmSync(dir, { recursive: true, force: true });
  assert.equal(down.status, 0, down.stderr);
});

// ---- the stand-in's kubectl, and fmc restore etcd (before upgrade: the nodes still run v1.33.4+k3s1)

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
  // the drain fmc node remove runs (drainCommand, src/runbooks/k3s-steps.ts): no pods in the lab, so cordon and done
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

test("fmc etcd status: three healthy members named as K3s names them, one leader", async () => {
  const s = await until("three healthy members", () => {
    const x = status();
    // the table and the JSON are two reads: both must see the cluster formed
    return x.code === 0 && x.members.length === 3 && x.members.every((m) => m.healthy) ? x : undefined;
  }, 30_000, 1000);
  assert.equal(s.code, 0);
  assert.deepEqual(s.members.map((m) => m.node).sort(), ["master1", "master2", "master3"]);
  assert.ok(s.members.every((m) => /^master\d-[0-9a-f]{8}$/.test(m.name)));
  assert.equal(s.members.filter((m) => m.isLeader).length, 1);
  assert.match(s.text, /^3 voting members, quorum 2, 3 healthy: 1 may fail; leader master\d-[0-9a-f]{8} \(asked master1\)$/m);
  // the stand-in is what the issue asks for: K3s's paths and unit on the server
  assert.equal(labExec("master2", ["systemctl", "is-active", "k3s"]).stdout.trim(), "active");
  assert.equal(labExec("master2", ["test", "-s", "/var/lib/rancher/k3s/server/tls/etcd/client.key"]).status, 0);
});

test("with k3s stopped on master3, it is unhealthy, status exits 1, and removing master2 is refused with the arithmetic", async () => {
  assert.equal(labExec("master3", ["systemctl", "stop", "k3s"]).status, 0);
  const s = await until("master3 unhealthy", () => {
    const x = status();
    return x.members.find((m) => m.node === "master3")?.healthy === false ? x : undefined;
  }, 30_000, 1000);
  assert.equal(s.code, 1);
  assert.match(s.text, /master3-[0-9a-f]{8} .* unhealthy/);
  assert.match(s.text, /3 voting members, quorum 2, 2 healthy: 0 may fail/);
  const verdict = quorumCheck(s.members, healthySet(s.members), { kind: "remove", member: "master2" });
  assert.equal(verdict.ok, false);
  assert.equal(verdict.text, "3 members, quorum 2; 1 unhealthy (master3); removing master2 leaves 1 healthy of 2 members, quorum 2: refused");

  // an upgrade restarts every server: refused while one is down
  const up = run("upgrade", "--to", "v1.33.5+k3s1", "--plan");
  assert.equal(up.status, 1);
  assert.match(up.stderr, /error\[QUORUM\] upgrading master1 restarts it: 3 members, quorum 2; 1 unhealthy \(master3\); stopping master1 leaves 1 healthy/);
  // the same decision through the command, with the arithmetic, and nothing done
  const refused = run("node", "remove", "master2", "--plan");
  assert.equal(refused.status, 1);
  assert.equal(refused.stdout, "Removing master2 is refused: 3 members, quorum 2; 1 unhealthy (master3); removing master2 leaves 1 healthy of 2 members, quorum 2: refused\n");

  assert.equal(labExec("master3", ["systemctl", "start", "k3s"]).status, 0);
  const back = await until("master3 healthy again", () => {
    const x = status();
    return x.code === 0 && x.members.every((m) => m.healthy) ? x : undefined;
  }, 30_000, 1000);
  assert.equal(quorumCheck(back.members, healthySet(back.members), { kind: "remove", member: "master2" }).ok, true);
  const p = run("node", "remove", "master2", "--plan");
  assert.equal(p.status, 0, p.stderr);
  const order = [...p.stdout.matchAll(/^ {2}\d+\. (.*)$/gm)].map((m) => m[1]!);
  assert.deepEqual(order.map((t) => t.split(/[ :]/)[0]), ["read", "drain", "stop", "remove", "delete", "set", "the"]);
  const id = back.members.find((m) => m.node === "master2")!.id;
  assert.ok(p.stdout.includes(`remove etcd member master2 (ID ${id})`), p.stdout);
  assert.match(p.stdout, /^ +- +server master2 10\.34\.4\.22:6443$/m, "lb1's HAProxy loses the backend");
  assert.equal(run("etcd", "status").status, 0, "a plan changes nothing: still three healthy members");
  // without --plan it asks first; with no terminal to ask, it refuses and does nothing
  const asked = run("node", "remove", "master2");
  assert.equal(asked.status, 1);
  assert.match(asked.stderr, /error\[CONFIRM\] fmc node remove changes the cluster and stdin is not a terminal to ask/);
  assert.equal(status().members.length, 3);
});

test("with master1's etcd down, status asks the next server and a new leader is elected", async () => {
  assert.equal(labExec("master1", ["systemctl", "stop", "k3s"]).status, 0);
  try {
    const s = await until("a leader among master2 and master3", () => {
      const x = status();
      const leader = x.members.find((m) => m.isLeader);
      return leader && leader.node !== "master1" ? x : undefined;
    }, 30_000, 1000);
    assert.equal(s.askedVia, "master2");
    assert.equal(s.code, 1, "one member is down");
  } finally {
    labExec("master1", ["systemctl", "start", "k3s"]);
  }
  await until("all healthy again", () => status().members.every((m) => m.healthy) || undefined, 30_000, 1000);
});

test("fmc backup etcd -o DIR: a snapshot saved on a server (k3s etcd-snapshot save) lands here with its .sha256; etcdctl snapshot status accepts it", (t) => {
  const tls = "/var/lib/rancher/k3s/server/tls/etcd";
  const put = labExec("master2", ["sh", "-c", `ETCDCTL_API=3 /usr/local/lib/fmc-lab/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=${tls}/server-ca.crt --cert=${tls}/client.crt --key=${tls}/client.key put /fmc/test kept`]);
  assert.equal(put.status, 0, put.stderr);
  const out = join(dir, "etcd-backups");
  const b = run("backup", "etcd", "-o", out);
  assert.equal(b.status, 0, b.stderr);
  const file = b.stdout.trim();
  assert.match(file, new RegExp(`^${out.replace(/[/.]/g, "\\$&")}/fmc-\\d{8}t\\d{6}z-master1-\\d+$`), "named as K3s names snapshots, from the first server");
  assert.equal(spawnSync("sha256sum", ["-c", `${basename(file)}.sha256`], { cwd: out, encoding: "utf8" }).status, 0);
  if (!existsSync("/usr/bin/etcdctl")) return t.skip("no etcdctl on this machine");
  const st = spawnSync("etcdctl", ["snapshot", "status", file, "-w", "json"], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });
  assert.equal(st.status, 0, st.stderr);
  assert.ok((JSON.parse(st.stdout) as { totalKey: number }).totalKey >= 1, st.stdout);
  // and the snapshot stays on the server, where K3s keeps its own
  assert.equal(labExec("master1", ["sh", "-c", `ls /var/lib/rancher/k3s/server/db/snapshots/${basename(file)}`]).status, 0);
});

test("fmc kubeconfig -o FILE: the admin kubeconfig from the first server, pointed at the API VIP, the cluster CA kept, 0600", () => {
  const file = join(dir, "kube", "config");
  const r = run("kubeconfig", "-o", file);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /merged context k3stest into /);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const view = spawnSync("kubectl", ["config", "view", "--raw", "-o", "json", "--kubeconfig", file], { encoding: "utf8" });
  assert.equal(view.status, 0, view.stderr);
  const k = JSON.parse(view.stdout) as { "current-context": string; clusters: Array<{ name: string; cluster: { server: string; "certificate-authority-data": string; "insecure-skip-tls-verify"?: boolean } }> };
  assert.equal(k["current-context"], "k3stest");
  const c = k.clusters.find((x) => x.name === "k3stest")!;
  assert.equal(c.cluster.server, "https://10.34.4.10:6443");
  assert.equal(c.cluster["insecure-skip-tls-verify"], undefined);
  const ca = labExec("master1", ["cat", "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt"]).stdout;
  assert.equal(Buffer.from(c.cluster["certificate-authority-data"], "base64").toString("utf8"), ca, "the CA the server's kubeconfig carries");
});

test("fmc upgrade --to --plan: servers one at a time before any agent; a skipped minor version or a downgrade is refused", () => {
  const p = run("upgrade", "--to", "v1.33.5+k3s1", "--plan", "--batch", "2");
  assert.equal(p.status, 0, p.stderr);
  const lines = p.stdout.trim().split("\n");
  assert.equal(lines[0], "Upgrade K3s v1.33.4+k3s1 -> v1.33.5+k3s1: 3 server(s) one at a time, each healthy again before the next, then 2 agent(s) in batches of 2, drained first; it stops at the first failure");
  const order = [...p.stdout.matchAll(/^ {2}\d+\. (.*)$/gm)].map((m) => m[1]!);
  assert.deepEqual(order.filter((t) => /^(restart|cordon and drain|uncordon)/.test(t)), ["restart K3s on master1", "restart K3s on master2", "restart K3s on master3", "cordon and drain worker1 (batch 1)", "cordon and drain worker2 (batch 1)", "restart the K3s agent on worker1", "uncordon worker1", "restart the K3s agent on worker2", "uncordon worker2"]);
  assert.match(p.stdout, /^ {2}4\. wait until master1 answers: API \/readyz ok, its etcd member healthy, its node Ready with v1\.33\.5\+k3s1$/m);
  const skip = run("upgrade", "--to", "v1.35.0+k3s1", "--plan");
  assert.equal(skip.status, 1);
  assert.match(skip.stdout, /Upgrade refused: v1\.33\.4\+k3s1 -> v1\.35\.0\+k3s1 skips 1 minor version\(s\): Kubernetes upgrades one minor version at a time \(v1\.34\.x first\)/);
  assert.match(run("upgrade", "--to", "v1.32.9+k3s1", "--plan").stdout, /fmc does not downgrade K3s/);
  const bad = run("upgrade", "--to", "1.34", "--plan");
  assert.match(bad.stderr, /error\[USAGE\] "1\.34" is not a K3s version/);
});

test("fmc certs: every etcd certificate of the stand-in on every server, K3s's window, an expired one found", () => {
  // the stand-in's certificates live 30 days (src/lab/k3s-standin.ts): inside K3s v1.33's 120-day renewal window;
  // its cluster CA (server/tls/server-ca.crt, the one agents pin) is a copy of its etcd server CA,
  // and fmc certs lists one certificate once
  type Check = { path: string; subject: string; ca: boolean; status: string; daysLeft: number };
  const j = run("certs", "--json");
  assert.equal(j.status, 1, j.stderr);
  const v = JSON.parse(j.stdout) as { windowDays: number; servers: Array<{ server: string; checks: Check[]; error?: string }> };
  assert.equal(v.windowDays, 120);
  assert.deepEqual(v.servers.map((s) => [s.server, s.error]), [["master1", undefined], ["master2", undefined], ["master3", undefined]]);
  for (const s of v.servers) {
    const files = (cs: Check[]) => cs.map((c) => c.path.replace("/var/lib/rancher/k3s/server/tls/", "")).sort();
    assert.deepEqual(files(s.checks), ["etcd/client.crt", "etcd/peer-ca.crt", "etcd/peer-server-client.crt", "etcd/server-client.crt", "server-ca.crt"]);
    assert.deepEqual(files(s.checks.filter((c) => c.ca)), ["etcd/peer-ca.crt", "server-ca.crt"]);
    assert.ok(s.checks.every((c) => c.status === "renew" && c.daysLeft >= 28 && c.daysLeft <= 30), JSON.stringify(s.checks));
  }
  const t = run("certs");
  assert.equal(t.status, 1);
  assert.match(t.stdout, /^15 certificates on 3 of 3 servers: 0 expired, 15 within 120 days, 0 ok$/m);
  assert.match(t.stdout, /^ {2}restart K3s on master1, master2, master3, one server at a time: /m);
  assert.match(t.stdout, /^ {2}CA certificates on master1, master2, master3 are never renewed automatically: k3s certificate rotate-ca/m);
  const week = run("certs", "--warn-days", "7");
  assert.equal(week.status, 0, week.stdout + week.stderr);
  assert.match(week.stdout, /^15 certificates on 3 of 3 servers: 0 expired, 0 within 7 days, 15 ok$/m);

  // an expired certificate put in master2's server/tls is found there, and only there
  const work = mkdtempSync(join(tmpdir(), "fmc-certs-"));
  const target = "/var/lib/rancher/k3s/server/tls/client-fmc-expired.crt";
  try {
    const ssl = (...args: string[]) => {
      const r = spawnSync("openssl", args, { cwd: work, encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
    };
    const when = (ms: number) => `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
    const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    ssl("req", "-x509", ...EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=fmc-test-ca");
    ssl("req", ...EC, "-keyout", "x.key", "-out", "x.csr", "-subj", "/CN=fmc-expired");
    writeFileSync(join(work, "ca.cnf"), "[ca]\ndefault_ca = x\n[x]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n");
    writeFileSync(join(work, "index.txt"), "");
    writeFileSync(join(work, "serial"), "01\n");
    // openssl 3.0's x509 has no -not_after; `openssl ca` takes both dates
    ssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", "-in", "x.csr", "-out", "x.crt", "-notext", "-startdate", when(Date.now() - 10 * 86_400_000), "-enddate", when(Date.now() - 86_400_000));
    const put = labExec("master2", ["sh", "-c", `cat > ${target}`], { input: readFileSync(join(work, "x.crt"), "utf8") });
    assert.equal(put.status, 0, put.stderr);
    const e = run("certs", "--warn-days", "7");
    assert.equal(e.status, 1, e.stderr);
    assert.match(e.stdout, /^master2\n(?: {2}.*\n)*? {2}server\/tls\/client-fmc-expired\.crt +fmc-expired +leaf .* -2 d {2}EXPIRED: a K3s restart renews it$/m);
    assert.match(e.stdout, /^16 certificates on 3 of 3 servers: 1 expired, 0 within 7 days, 15 ok$/m);
    assert.match(e.stdout, /^ {2}restart K3s on master2, one server at a time: /m);
  } finally {
    labExec("master2", ["rm", "-f", target]);
    rmSync(work, { recursive: true, force: true });
  }
});

test("fmc node remove master3 --yes, then fmc node add master3 --yes: its member really leaves the real etcd and joins again afresh", async () => {
  const gone = run("node", "remove", "master3", "--yes");
  assert.equal(gone.status, 0, gone.stdout + gone.stderr);
  assert.match(gone.stderr, /\[3\/7\] master3: stop and disable K3s on master3, so it cannot rejoin: done/);
  assert.match(gone.stdout, /Now take master3 out of the spec's hosts/);
  const two = status();
  assert.equal(two.code, 0, two.text);
  assert.deepEqual(two.members.map((m) => m.node).sort(), ["master1", "master2"]);
  assert.equal(labExec("master3", ["systemctl", "is-enabled", "k3s"]).stdout.trim(), "disabled");
  assert.equal(labExec("master3", ["sh", "-c", "ls -d /var/lib/rancher/k3s/server/db.removed-*"]).status, 0, "its old data is set aside, not deleted");
  const again = run("node", "add", "master3", "--yes");
  assert.equal(again.status, 0, again.stdout + again.stderr);
  assert.match(again.stdout, /^ {2}1\. read etcd again: add master3 only if etcd keeps quorum$/m);
  const three = await until("three healthy members again", () => {
    const x = status();
    return x.code === 0 && x.members.length === 3 && x.members.every((m) => m.healthy) ? x : undefined;
  }, 60_000, 1000);
  assert.notEqual(three.members.find((m) => m.node === "master3")!.id, two.members.find((m) => m.node === "master3")?.id);
  const re = run("node", "add", "master3", "--plan");
  assert.equal(re.status, 1);
  assert.match(re.stderr + re.stdout, /master3 is an etcd member already/);
});

test("fmc upgrade --to v1.33.5+k3s1 --yes: the lab's stand-in of that version replaces the binary, servers restart one at a time on the real etcd, agents are drained and uncordoned", async () => {
  const u = run("upgrade", "--to", "v1.33.5+k3s1", "--batch", "2", "--yes");
  assert.equal(u.status, 0, u.stdout + u.stderr);
  // the lab made a stand-in of that version for it (at the --plan above, or now)
  assert.ok(existsSync(join(dir, ".fmc/lab/k3s-bundle-v1.33.5+k3s1/bundle.json")));
  const done = (re: RegExp) => {
    const i = u.stderr.split("\n").findIndex((l) => re.test(l) && / done in /.test(l));
    assert.ok(i >= 0, `${re} in\n${u.stderr}`);
    return i;
  };
  const r1 = done(/master1: restart K3s on master1/);
  const w1 = done(/wait until master1 answers/);
  const r2 = done(/master2: restart K3s on master2/);
  const r3 = done(/master3: restart K3s on master3/);
  const d1 = done(/cordon and drain worker1/);
  const a1 = done(/restart the K3s agent on worker1/);
  assert.ok(r1 < w1 && w1 < r2 && r2 < r3 && r3 < d1 && d1 < a1, "servers one at a time, each waited for, then the agents drained first");
  for (const h of ["master1", "master2", "master3", "worker1", "worker2"]) {
    assert.match(labExec(h, ["/usr/local/bin/k3s", "--version"]).stdout, /^k3s version v1\.33\.5\+k3s1 /, h);
  }
  const node = JSON.parse(labExec("master1", ["/usr/local/bin/k3s", "kubectl", "get", "node", "worker2", "-o", "json"]).stdout) as { spec: { unschedulable?: boolean }; status: { nodeInfo: { kubeletVersion: string } } };
  assert.equal(node.status.nodeInfo.kubeletVersion, "v1.33.5+k3s1");
  assert.equal(node.spec.unschedulable, undefined, "uncordoned");
  assert.match(u.stdout, /k3s\.version/);
  const s = await until("three healthy members", () => {
    const x = status();
    return x.code === 0 && x.members.length === 3 ? x : undefined;
  }, 30_000, 1000);
  assert.ok(s.members.every((m) => m.healthy));
  // and again: nothing newer to go to
  const again = run("upgrade", "--to", "v1.33.5+k3s1", "--plan");
  assert.equal(again.status, 1);
});

test("fmc reset --yes tears K3s off every node (agents first) and forgets the cluster; the next apply bootstraps a new one", () => {
  const r = run("reset", "--yes");
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^This destroys the K3s cluster k3stest on worker1, worker2, master3, master2, master1:/m);
  for (const h of ["master1", "master2", "master3", "worker1", "worker2"]) {
    assert.equal(labExec(h, ["sh", "-c", "systemctl is-active k3s k3s-agent; test -e /var/lib/rancher/k3s || test -e /etc/rancher/k3s/config.yaml || test -e /usr/local/bin/k3s"]).status, 1, `${h} still has K3s`);
  }
  assert.notEqual(run("etcd", "status").status, 0);
  const plan = run("plan", ...K3S_PHASES);
  assert.match(plan.stdout, /wait for master1 \(bootstraps the cluster\), then record that the cluster exists/, "the first server bootstraps again");
  const again = run("apply", "--yes", ...K3S_PHASES);
  assert.equal(again.status, 0, again.stdout + again.stderr);
  const s = status();
  assert.equal(s.code, 0, s.text);
  assert.equal(s.members.length, 3);
});
