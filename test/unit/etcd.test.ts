// fmc's view of K3s's embedded etcd: the gateway answers in test/fixtures/etcd/ are real
// (etcd 3.4.23, captured by test/root/etcd.test.ts; see the README there), and the quorum
// arithmetic is checked case by case, refusal texts included.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { RecordingTransport } from "../../src/hosts/transport.js";
import { FmcError } from "../../src/errors.js";
import {
  K3S_ETCD,
  checkEndpoint,
  etcdAccess,
  healthCommand,
  memberAddCommand,
  memberIdHex,
  memberLabel,
  memberListCommand,
  memberRemoveCommand,
  nodeNameOf,
  parseAddedMember,
  parseHealth,
  parseMembers,
  parseProbe,
  parseRangeValue,
  parseStatus,
  probeCommand,
  quorumCheck,
  quorumOf,
  rangeCommand,
  readCluster,
  replacementSteps,
  statusCommand,
  type EtcdMember,
} from "../../src/k3s/etcd.js";
import { ROOT } from "../helpers.js";

const fixture = (name: string) => readFileSync(join(ROOT, "test/fixtures/etcd", name), "utf8");
const k3s = etcdAccess();

// IDs of the captured cluster
const ID1 = "14174766230561539365";
const ID2 = "15686964746127964997";
const ID3 = "14143064171691677438";

test("member list: uint64 IDs kept as exact strings, K3s member names mapped to nodes", () => {
  const ms = parseMembers(fixture("member-list.json"));
  assert.deepEqual(
    ms.map((m) => [m.id, m.name, m.node, m.peerURLs, m.clientURLs, m.isLearner, m.started]),
    [
      [ID1, "master1-0a1b2c3d", "master1", ["https://10.250.9.1:2380"], ["https://10.250.9.1:2379"], false, true],
      [ID2, "master2-4e5f6a7b", "master2", ["https://10.250.9.2:2380"], ["https://10.250.9.2:2379"], false, true],
      [ID3, "master3-8c9d0e1f", "master3", ["https://10.250.9.3:2380"], ["https://10.250.9.3:2379"], false, true],
    ],
  );
  // the reason IDs stay strings: as a number the ID is no longer itself
  assert.notEqual(String(Number(ID1)), ID1);
  assert.equal(memberIdHex(ID1), "c4b6e2c91ad2c525"); // the local-member-id in etcd's own log
  assert.equal(nodeNameOf("master1-0a1b2c3d"), "master1");
  assert.equal(nodeNameOf("master-1"), "master-1");
  assert.deepEqual(parseMembers(fixture("member-remove.json")).map((m) => m.node), ["master1", "master3"]);
});

test("a learner that has not started has no name and no client URL", () => {
  const ms = parseMembers(fixture("member-list-learner.json"));
  const l = ms.find((m) => m.isLearner)!;
  assert.deepEqual([l.name, l.node, l.started, l.clientURLs, memberLabel(l)], ["", "", false, [], "unstarted https://10.250.9.2:2380"]);
  assert.equal(ms.at(-1), l); // unnamed members sort last
  const added = parseAddedMember(fixture("member-add-learner.json"));
  assert.deepEqual([added.id, added.isLearner, added.started], [l.id, true, false]);
});

test("etcd's errors become FmcErrors with etcd's message", () => {
  assert.throws(
    () => parseMembers(fixture("member-remove-refused.json")),
    (e: FmcError) => e instanceof FmcError && e.code === "ETCD_ERROR" && e.message === "etcd member list: etcdserver: unhealthy cluster (gRPC code 14)" && /connected for 5 s/.test(e.hint!),
  );
  assert.throws(() => parseMembers(fixture("member-remove-notfound.json")), /member not found \(gRPC code 5\)/);
  assert.throws(() => parseMembers("404 page not found"), (e: FmcError) => e.code === "ETCD_RESPONSE");
  assert.throws(() => parseMembers('{"members":[{"ID":"-3"}]}'), (e: FmcError) => e.code === "ETCD_RESPONSE" && /expected a uint64/.test(e.message));
});

test("status: leader, database size, raft term, version; no leader when quorum is lost", () => {
  const s = parseStatus(fixture("status.json"));
  assert.deepEqual(s, { memberId: ID1, clusterId: "11544442990943833525", leader: ID3, version: "3.4.23", dbSize: 20480, dbSizeInUse: 16384, raftTerm: "2", raftIndex: "11", isLearner: false, errors: [] });
  const lost = parseStatus(fixture("status-noleader.json"));
  assert.equal(lost.leader, undefined);
  assert.deepEqual(lost.errors, ["etcdserver: no leader"]);
});

test("health: true, false without quorum, and a member that does not answer", () => {
  const ep = "https://127.0.0.1:2379";
  assert.deepEqual(parseHealth(ep, { code: 0, stdout: fixture("health.json"), stderr: "" }), { endpoint: ep, healthy: true });
  const noQuorum = parseHealth(ep, { code: 0, stdout: fixture("health-noquorum.json"), stderr: "" });
  assert.equal(noQuorum.healthy, false);
  assert.match(noQuorum.reason!, /no leader/);
  assert.deepEqual(parseHealth(ep, { code: 0, stdout: '{"health":true,"reason":""}', stderr: "" }), { endpoint: ep, healthy: true }); // etcd >= 3.6 writes a boolean
  const down = parseHealth(ep, { code: 7, stdout: "", stderr: "curl: (7) Failed to connect to 127.0.0.1 port 2379 after 0 ms: Couldn't connect to server\n" });
  assert.deepEqual(down, { endpoint: ep, healthy: false, reason: "curl: (7) Failed to connect to 127.0.0.1 port 2379 after 0 ms: Couldn't connect to server" });
});

test("the probe of three members with one stopped: two healthy with one leader, one unreachable", () => {
  const p = parseProbe(fixture("probe-one-down.txt"));
  assert.deepEqual([...p.keys()], ["https://10.250.9.1:2379", "https://10.250.9.2:2379", "https://10.250.9.3:2379"]);
  assert.deepEqual([...p.values()].map((r) => r.health.healthy), [true, true, false]);
  assert.match(p.get("https://10.250.9.3:2379")!.health.reason!, /Couldn't connect to server/);
  assert.match(p.get("https://10.250.9.3:2379")!.statusError!, /^curl: \(7\)/);
  assert.equal(p.get("https://10.250.9.1:2379")!.status!.leader, ID2);
  assert.equal(p.get("https://10.250.9.2:2379")!.status!.leader, ID2);
  assert.throws(() => parseProbe("health https://x:1 0 e30=\nsomething else"), /unexpected line/);
});

test("kv range: key and value are base64 in both directions", () => {
  assert.equal(parseRangeValue(fixture("range.json")), "kept through a snapshot");
  assert.equal(parseRangeValue('{"header":{"revision":"2"}}'), undefined);
  assert.match(rangeCommand(k3s, "/fmc/restore-check").shell, /-d '\{"key":"L2ZtYy9yZXN0b3JlLWNoZWNr"\}' /);
});

test("readCluster: member list, then one probe of every client URL; quorum check on what it read", async () => {
  const t = new RecordingTransport("master1", [
    (c) => (c.shell.endsWith("/v3/cluster/member/list") ? { code: 0, stdout: fixture("member-list.json"), stderr: "" } : undefined),
    (c) => (c.shell.includes("/health") ? { code: 0, stdout: fixture("probe-one-down.txt"), stderr: "" } : undefined),
  ]);
  const c = await readCluster(t, k3s);
  assert.equal(t.log.length, 2);
  assert.deepEqual(c.members.map((m) => [m.node, m.healthy, m.isLeader, m.status?.dbSize]), [
    ["master1", true, false, 20480],
    ["master2", true, true, 24576],
    ["master3", false, false, undefined],
  ]);
  assert.equal(c.leader, ID2);
  assert.deepEqual([...c.healthy], [ID1, ID2]);
  assert.deepEqual(quorumCheck(c.members, c.healthy, { kind: "remove", member: "master2" }), {
    ok: false,
    text: "3 members, quorum 2; 1 unhealthy (master3); removing master2 leaves 1 healthy of 2 members, quorum 2: refused",
  });
  const unreachable = new RecordingTransport("master1", [() => ({ code: 7, stdout: "", stderr: "curl: (7) Failed to connect" })]);
  await assert.rejects(readCluster(unreachable, k3s), (e: FmcError) => e.code === "ETCD_UNREACHABLE" && /systemctl status k3s/.test(e.hint!));
});

test("commands: curl with K3s's etcd client certificate against the local member", () => {
  const tls = `--cacert ${K3S_ETCD.caFile} --cert ${K3S_ETCD.certFile} --key ${K3S_ETCD.keyFile}`;
  assert.equal(K3S_ETCD.caFile, "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt");
  assert.equal(memberListCommand(k3s).shell, `curl -sS --max-time 5 ${tls} -X POST -H 'Content-Type: application/json' -d '{}' https://127.0.0.1:2379/v3/cluster/member/list`);
  assert.equal(statusCommand(k3s, "https://10.17.3.12:2379").shell, `curl -sS --max-time 5 ${tls} -X POST -H 'Content-Type: application/json' -d '{}' https://10.17.3.12:2379/v3/maintenance/status`);
  assert.equal(healthCommand(k3s).shell, `curl -sS --max-time 5 ${tls} https://127.0.0.1:2379/health`);
  assert.equal(memberRemoveCommand(k3s, ID3).shell, `curl -sS --max-time 5 ${tls} -X POST -H 'Content-Type: application/json' -d '{"ID":"${ID3}"}' https://127.0.0.1:2379/v3/cluster/member/remove`);
  assert.equal(memberAddCommand(k3s, ["https://10.17.3.14:2380"], { learner: true }).shell, `curl -sS --max-time 5 ${tls} -X POST -H 'Content-Type: application/json' -d '{"peerURLs":["https://10.17.3.14:2380"],"isLearner":true}' https://127.0.0.1:2379/v3/cluster/member/add`);
  assert.equal(etcdAccess({ endpoint: "https://10.0.0.1:2379", timeoutS: 2 }).timeoutS, 2);
});

test("IDs and URLs that did not come from etcd never reach a shell", () => {
  for (const id of ["0", "-1", "18446744073709551616", "1; reboot", "c4b6e2c91ad2c525", ""]) {
    assert.throws(() => memberRemoveCommand(k3s, id), (e: FmcError) => e.code === "ETCD_MEMBER_ID", id);
  }
  assert.equal(memberRemoveCommand(k3s, "18446744073709551615").display.includes("18446744073709551615"), true);
  for (const url of ["https://10.0.0.1:2379/x", "https://10.0.0.1", "file:///etc/passwd", "https://u:p@h:1", "https://h:1/", "https://$(reboot):1", "https://h:1?x", "nonsense"]) {
    assert.throws(() => checkEndpoint(url), (e: FmcError) => e.code === "ETCD_ENDPOINT", url);
  }
  assert.throws(() => probeCommand(k3s, ["https://10.0.0.1:2379", "https://a'b:1"]), (e: FmcError) => e.code === "ETCD_ENDPOINT");
  assert.throws(() => memberAddCommand(k3s, []), /at least one peer URL/);
  assert.throws(() => etcdAccess({ caFile: "relative.crt" }), /absolute path/);
  assert.throws(() => etcdAccess({ timeoutS: 0 }), /timeoutS/);
});

test("the probe script is valid sh (sh -n) and prints one line per request", () => {
  const p = probeCommand(k3s, ["https://10.17.3.11:2379", "https://[fd00::1]:2379"]);
  const r = spawnSync("sh", ["-n", "-c", p.shell], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal((p.shell.match(/printf '(health|status) /g) ?? []).length, 4);
  // run it with curl and base64 stubbed: the output parses back
  const stub = `curl() { case "$*" in *health*) printf '{"health":"true"}';; *) echo "curl: (7) refused" >&2; return 7;; esac; }\n`;
  const out = spawnSync("sh", ["-c", stub + p.shell], { encoding: "utf8" });
  const parsed = parseProbe(out.stdout);
  assert.deepEqual([...parsed.values()].map((v) => [v.health.healthy, v.statusError]), [
    [true, "curl: (7) refused"],
    [true, "curl: (7) refused"],
  ]);
});

// ---------------------------------------------------------------------------------------------
// Quorum arithmetic

const m = (node: string, k: number, extra: Partial<EtcdMember> = {}): EtcdMember => ({
  id: String(1000 + k),
  name: `${node}-0000000${k}`,
  node,
  peerURLs: [`https://10.17.3.${10 + k}:2380`],
  clientURLs: [`https://10.17.3.${10 + k}:2379`],
  isLearner: false,
  started: true,
  ...extra,
});
const three = [m("master1", 1), m("master2", 2), m("master3", 3)];
const five = [...three, m("master4", 4), m("master5", 5)];

test("quorum is floor(n/2)+1", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(quorumOf), [1, 2, 2, 3, 3, 4, 4]);
});

test("removals: allowed while the healthy rest reaches the new quorum, refused with the arithmetic otherwise", () => {
  const cases: Array<[EtcdMember[], string[], string, boolean, string]> = [
    [three, ["master1", "master2", "master3"], "master2", true, "3 members, quorum 2; all healthy; removing master2 leaves 2 healthy of 2 members, quorum 2: allowed"],
    [three, ["master1", "master2"], "master2", false, "3 members, quorum 2; 1 unhealthy (master3); removing master2 leaves 1 healthy of 2 members, quorum 2: refused"],
    [three, ["master1", "master2"], "master3", true, "3 members, quorum 2; 1 unhealthy (master3); removing master3 leaves 2 healthy of 2 members, quorum 2: allowed"],
    [three, ["master1"], "master3", false, "3 members, quorum 2; 2 unhealthy (master2, master3); only 1 healthy, below quorum 2, so etcd cannot commit any change (restore from a snapshot): refused"],
    [five, ["master1", "master2", "master3", "master4"], "master1", true, "5 members, quorum 3; 1 unhealthy (master5); removing master1 leaves 3 healthy of 4 members, quorum 3: allowed"],
    [five, ["master1", "master2", "master3"], "master1", false, "5 members, quorum 3; 2 unhealthy (master4, master5); removing master1 leaves 2 healthy of 4 members, quorum 3: refused"],
    [five, ["master1", "master2", "master3"], "master5", true, "5 members, quorum 3; 2 unhealthy (master4, master5); removing master5 leaves 3 healthy of 4 members, quorum 3: allowed"],
    [[m("master1", 1)], ["master1"], "master1", false, "1 member, quorum 1; all healthy; removing master1 would leave no members: refused"],
    [three, ["master1", "master2", "master3"], "master9", false, "3 members, quorum 2; all healthy; master9 is not an etcd member: refused"],
  ];
  for (const [members, healthy, member, ok, text] of cases) {
    assert.deepEqual(quorumCheck(members, healthy, { kind: "remove", member }), { ok, text });
  }
  // members are found by node name, etcd name, decimal ID or hex ID; healthy by any of those too
  for (const ref of ["master2", "master2-00000002", "1002", "3ea"]) assert.equal(quorumCheck(three, new Set(["1001", "master2-00000002", "3eb"]), { kind: "remove", member: ref }).ok, true, ref);
});

test("planned stops (upgrades, reboots) keep quorum or are refused", () => {
  assert.deepEqual(quorumCheck(three, ["master1", "master2", "master3"], { kind: "stop", member: "master1" }), { ok: true, text: "3 members, quorum 2; all healthy; stopping master1 leaves 2 healthy of 3 members, quorum 2: allowed" });
  assert.deepEqual(quorumCheck(three, ["master1", "master2"], { kind: "stop", member: "master1" }), { ok: false, text: "3 members, quorum 2; 1 unhealthy (master3); stopping master1 leaves 1 healthy of 3 members, quorum 2: refused" });
  assert.deepEqual(quorumCheck(three, ["master1", "master2"], { kind: "stop", member: "master3" }).ok, true);
  assert.equal(quorumCheck([m("master1", 1), m("master2", 2)], ["master1", "master2"], { kind: "stop", member: "master2" }).text, "2 members, quorum 2; all healthy; stopping master2 leaves 1 healthy of 2 members, quorum 2: refused");
});

test("adds: refused while any member is unhealthy (etcd's strict reconfiguration check), learners one at a time", () => {
  const all = ["master1", "master2", "master3"];
  assert.deepEqual(quorumCheck(three, all, { kind: "add", name: "master4" }), { ok: true, text: "3 members, quorum 2; all healthy; adding master4 makes 4 members, quorum 3, with 3 healthy until it starts: allowed" });
  assert.deepEqual(quorumCheck(three, ["master1", "master2"], { kind: "add", name: "master4" }), {
    ok: false,
    text: "3 members, quorum 2; 1 unhealthy (master3); adding master4 while 1 is unhealthy: etcd's strict reconfiguration check refuses it (until master4 starts: 2 healthy of 4 members, quorum 3); remove or repair the unhealthy member first: refused",
  });
  assert.deepEqual(quorumCheck(three, all, { kind: "add", name: "master4", learner: true }), {
    ok: true,
    text: "3 members, quorum 2; all healthy; adding master4 as a learner keeps 3 voting members, quorum 2 (a learner votes only once promoted, then 4 members, quorum 3): allowed",
  });
  assert.equal(quorumCheck([m("master1", 1)], ["master1"], { kind: "add", name: "master2" }).text, "1 member, quorum 1; all healthy; adding master2 makes 2 members, quorum 2, with 1 healthy until it starts (add it as a learner instead, as K3s does): refused");
  assert.equal(quorumCheck([m("master1", 1)], ["master1"], { kind: "add", name: "master2", learner: true }).ok, true);
  const withLearner = [...three, m("master4", 4, { isLearner: true })];
  assert.equal(quorumCheck(withLearner, [...all, "master4"], { kind: "add", name: "master5", learner: true }).text, "3 members (+1 learner), quorum 2; all healthy; adding master5 as a learner: master4 is still a learner and etcd allows one at a time: refused");
  assert.equal(quorumCheck(withLearner, all, { kind: "remove", member: "master4" }).text, "3 members (+1 learner), quorum 2; all healthy; removing learner master4 leaves 3 voting members, quorum 2: allowed");
  assert.equal(quorumCheck(three, all, { kind: "add", name: "master2" }).ok, false);
});

test("replacing a healthy server: add the new one, wait, then drain, stop and remove the old one", () => {
  const plan = replacementSteps(three, ["master1", "master2", "master3"], "master2", "master4");
  assert.equal(plan.ok, true);
  assert.deepEqual(plan.steps.map((s) => `${s.action} ${s.node}`), [
    "check master4",
    "join master4",
    "wait-healthy master4",
    "check master2",
    "drain master2",
    "stop master2",
    "check master2",
    "remove-member master2",
    "delete-node master2",
  ]);
  assert.deepEqual(plan.steps.filter((s) => s.action === "check").map((s) => s.verdict!.text), [
    "3 members, quorum 2; all healthy; adding master4 as a learner keeps 3 voting members, quorum 2 (a learner votes only once promoted, then 4 members, quorum 3): allowed",
    "4 members, quorum 3; all healthy; stopping master2 leaves 3 healthy of 4 members, quorum 3: allowed",
    "4 members, quorum 3; 1 unhealthy (master2); removing master2 leaves 3 healthy of 3 members, quorum 2: allowed",
  ]);
  assert.deepEqual(plan.steps[3]!.change, { kind: "stop", member: "1002" });
  assert.match(plan.steps[7]!.text, /remove etcd member 3ea \(master2-00000002\)/);
});

test("replacing a dead server: remove it first, then add the new one; a second failure refuses the plan", () => {
  const plan = replacementSteps(three, ["master1", "master2"], "master3", "master4");
  assert.equal(plan.ok, true);
  assert.deepEqual(plan.steps.map((s) => `${s.action} ${s.node}`), ["check master3", "drain master3", "stop master3", "remove-member master3", "delete-node master3", "check master4", "join master4", "wait-healthy master4"]);
  assert.equal(plan.steps[5]!.verdict!.text, "2 members, quorum 2; all healthy; adding master4 as a learner keeps 2 voting members, quorum 2 (a learner votes only once promoted, then 3 members, quorum 2): allowed");

  const refused = replacementSteps(three, ["master1", "master2"], "master2", "master4");
  assert.equal(refused.ok, false);
  assert.equal(refused.ok ? "" : refused.text, "3 members, quorum 2; 1 unhealthy (master3); adding master4 as a learner while 1 is unhealthy: etcd's strict reconfiguration check refuses any add until every voting member is connected; remove or repair the unhealthy member first: refused");
  assert.deepEqual(refused.steps.map((s) => s.action), ["check"]);
  assert.deepEqual(replacementSteps(three, [], "master9", "master4"), { ok: false, text: "master9 is not an etcd member", steps: [] });
});
