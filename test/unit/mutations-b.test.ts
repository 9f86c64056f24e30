// Tests written against mutations that survived the rest of the unit suite: etcd members that
// disagree about the leader, serial phases applied in parallel, and --concurrency ignored.
// Hosts are played by fake transports that record when each command begins and ends, so
// overlap is read from the order of events, never from the clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { RecordingTransport, type ExecResult, type Transport } from "../../src/hosts/transport.js";
import { cmd, type Command } from "../../src/hosts/command.js";
import { etcdAccess, readCluster } from "../../src/k3s/etcd.js";
import { apply, plan, pool } from "../../src/engine/run.js";
import type { Phase, PhaseContext } from "../../src/phases/phase.js";
import type { Change } from "../../src/ops/change.js";
import { sessionOptions } from "../../src/cli/session-args.js";
import { FmcError } from "../../src/errors.js";
import { contextFor, ROOT } from "../helpers.js";

// ---------------------------------------------------------------------------------------------
// etcd: two members claiming leadership

const fixture = (name: string) => readFileSync(join(ROOT, "test/fixtures/etcd", name), "utf8");
// the captured cluster's members (test/fixtures/etcd/member-list.json)
const ID1 = "14174766230561539365"; // master1
const ID2 = "15686964746127964997"; // master2
const ID3 = "14143064171691677438"; // master3
const CLUSTER = "11544442990943833525";
const b64 = (s: string) => Buffer.from(s).toString("base64");
const statusOf = (member: string, leader: string) =>
  JSON.stringify({ header: { cluster_id: CLUSTER, member_id: member, revision: "1", raft_term: "3" }, version: "3.4.23", dbSize: "20480", leader, raftIndex: "16", raftTerm: "3" });

/** probeCommand's output: per member, its health and the leader its status names. */
function probeOutput(members: Array<{ url: string; id: string; healthy: boolean; leader: string }>): string {
  return members
    .flatMap((m) => [
      `health ${m.url} 0 ${b64(JSON.stringify({ health: m.healthy ? "true" : "false" }))}`,
      `status ${m.url} 0 ${b64(statusOf(m.id, m.leader))}`,
    ])
    .join("\n");
}

const etcdHost = (probe: string) =>
  new RecordingTransport("master1", [
    (c) => (c.shell.endsWith("/v3/cluster/member/list") ? { code: 0, stdout: fixture("member-list.json"), stderr: "" } : undefined),
    (c) => (c.shell.includes("/health") ? { code: 0, stdout: probe, stderr: "" } : undefined),
  ]);

/** The three members as fmc reads them: each says whether it is healthy and whom it takes for leader. */
const clusterSaying = (leaders: Array<{ healthy: boolean; leader: string }>) =>
  readCluster(etcdHost(probeOutput(leaders.map((m, i) => ({ url: `https://10.250.9.${i + 1}:2379`, id: [ID1, ID2, ID3][i]!, ...m })))), etcdAccess());

test("etcd: two healthy members each naming a different leader are not collapsed to one leader; both claims stay visible", async () => {
  // master1 says it leads, master2 and master3 say master2 does: no single leader
  const c = await clusterSaying([
    { healthy: true, leader: ID1 },
    { healthy: true, leader: ID2 },
    { healthy: true, leader: ID2 },
  ]);
  assert.equal(c.leader, undefined, "two leaders claimed: fmc names none rather than the first");
  assert.deepEqual(
    c.members.map((m) => [m.node, m.healthy, m.isLeader]),
    [
      ["master1", true, false],
      ["master2", true, false],
      ["master3", true, false],
    ],
    "no member is shown as the leader",
  );
  // what each member said is kept (fmc etcd status --json prints it): both leaders are named there
  assert.deepEqual(c.members.map((m) => m.status?.leader), [ID1, ID2, ID2]);

  // the same cluster, all agreeing: one leader, and only it is marked
  const agreed = await clusterSaying([
    { healthy: true, leader: ID2 },
    { healthy: true, leader: ID2 },
    { healthy: true, leader: ID2 },
  ]);
  assert.equal(agreed.leader, ID2);
  assert.deepEqual(agreed.members.map((m) => m.isLeader), [false, true, false]);

  // an unhealthy member's own idea of the leader does not count against the healthy ones'
  const stale = await clusterSaying([
    { healthy: false, leader: ID1 },
    { healthy: true, leader: ID2 },
    { healthy: true, leader: ID2 },
  ]);
  assert.equal(stale.leader, ID2);
  assert.deepEqual(stale.members.map((m) => m.isLeader), [false, true, false]);
});

// ---------------------------------------------------------------------------------------------
// The engine: serial phases and --concurrency

type Ev = { kind: "begin" | "end"; host: string; what: string };

/**
 * A host that answers fact reads with the least parseFacts accepts and every other command
 * with success (or failure, for hosts in `failOn`), recording the begin and end of each
 * command in a log shared by all hosts. Between them it yields to the event loop, so hosts
 * started together are in flight together.
 */
class EventTransport implements Transport {
  constructor(
    readonly host: string,
    private readonly events: Ev[],
    private readonly failOn: ReadonlySet<string> = new Set(),
  ) {}

  async exec(command: Command, step: string): Promise<ExecResult> {
    // apply names each step "<phase>: <title>"
    const what = command.display === "read facts" ? "facts" : step.slice(0, step.indexOf(":"));
    this.events.push({ kind: "begin", host: this.host, what });
    await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setImmediate(r));
    this.events.push({ kind: "end", host: this.host, what });
    if (what === "facts") return { code: 0, stdout: `@os\nID=debian\nVERSION_ID="12"\n@hostname\n${this.host}\n@end\n`, stderr: "" };
    return this.failOn.has(this.host) ? { code: 1, stdout: "", stderr: `${this.host} broke` } : { code: 0, stdout: "", stderr: "" };
  }

  close(): void {}
}

/** The most hosts that were between their first begin and their last end at once, over the events of `what` (facts, or a phase). */
function mostHostsInFlight(events: readonly Ev[], what: string): number {
  const relevant = events.filter((e) => e.what === what);
  const last = new Map<string, number>();
  relevant.forEach((e, i) => e.kind === "end" && last.set(e.host, i));
  const open = new Set<string>();
  let most = 0;
  relevant.forEach((e, i) => {
    if (e.kind === "begin") open.add(e.host);
    most = Math.max(most, open.size);
    if (e.kind === "end" && last.get(e.host) === i) open.delete(e.host);
  });
  return most;
}

/** A phase over `names` that plans `steps` two-command changes on each host. */
function testPhase(name: string, names: readonly string[], o: { serial?: boolean; steps?: number } = {}): Phase {
  return {
    name,
    description: `test phase ${name}`,
    ...(o.serial ? { serial: true } : {}),
    hosts: (pc) => names.map((n) => pc.render.spec.hosts.find((h) => h.name === n)!),
    facts: () => ({}),
    plan: (_pc, h): Change[] =>
      Array.from({ length: o.steps ?? 1 }, (_, i) => ({ host: h.name, phase: name, title: `step ${i + 1} on ${h.name}`, commands: [cmd("echo", name, h.name, "a"), cmd("echo", name, h.name, "b")], notes: [] })),
  };
}

const pcOf = (): PhaseContext => ({ render: contextFor(), mask: (t) => t, loginUser: () => "core" });

function hostsOf(names: readonly string[], events: Ev[], failOn?: ReadonlySet<string>): Map<string, Transport> {
  return new Map(names.map((n) => [n, new EventTransport(n, events, failOn)]));
}

/** The hosts in the order their change commands began, each once. */
const startOrder = (events: readonly Ev[]) => [...new Set(events.filter((e) => e.what !== "facts" && e.kind === "begin").map((e) => e.host))];

test("a serial phase's hosts are applied one at a time in hosts() order: no two hosts' commands overlap", async () => {
  const servers = ["master1", "master2", "master3"];
  const phase = testPhase("servers", servers, { serial: true, steps: 2 });
  const events: Ev[] = [];
  const transports = hostsOf(servers, events);
  const p = await plan(pcOf(), [phase], transports, { concurrency: 16 });
  events.length = 0; // the fact reads before it may overlap: only apply's order is checked
  const r = await apply(p, transports, { concurrency: 16 });
  assert.equal(r.changes, 6);
  assert.equal(mostHostsInFlight(events, "servers"), 1, `hosts overlapped in a serial phase:\n${events.map((e) => `${e.kind} ${e.host}`).join("\n")}`);
  // each host's commands are all done before the next host's begin
  assert.deepEqual(
    events.filter((e) => e.kind === "begin").map((e) => e.host),
    servers.flatMap((h) => [h, h, h, h]),
  );

  // the same phase not serial: its hosts do run together (the fake transport lets them overlap)
  const parallel: Ev[] = [];
  const t2 = hostsOf(servers, parallel);
  const p2 = await plan(pcOf(), [testPhase("servers", servers, { steps: 2 })], t2, { concurrency: 16 });
  parallel.length = 0;
  await apply(p2, t2, { concurrency: 16 });
  assert.equal(mostHostsInFlight(parallel, "servers"), 3);
});

test("a serial phase stops at the first failing host: the hosts after it never start", async () => {
  const servers = ["master1", "master2", "master3"];
  const events: Ev[] = [];
  const transports = hostsOf(servers, events, new Set(["master2"]));
  const p = await plan(pcOf(), [testPhase("servers", servers, { serial: true })], transports, { concurrency: 16 });
  events.length = 0;
  await assert.rejects(apply(p, transports, { concurrency: 16 }), (e) => {
    assert.ok(e instanceof FmcError, String(e));
    assert.match(e.message, /apply stopped in phase servers:\n\s+master2: servers: step 1 on master2 failed \(exit 1\):\nmaster2 broke/);
    assert.doesNotMatch(e.message, /master3/);
    return true;
  });
  assert.deepEqual(startOrder(events), ["master1", "master2"], "master3 began after master2 failed");
});

test("--concurrency N: pool never has more than N items in flight, and does reach N", async () => {
  for (const [items, limit] of [
    [7, 1],
    [7, 2],
    [7, 3],
    [2, 5],
  ] as const) {
    let inFlight = 0;
    let most = 0;
    const r = await pool(
      Array.from({ length: items }, (_, i) => i),
      limit,
      async (i) => {
        most = Math.max(most, ++inFlight);
        await new Promise((res) => setTimeout(res, 1));
        inFlight--;
        return i;
      },
    );
    assert.equal(most, Math.min(items, limit), `${items} items, limit ${limit}`);
    assert.deepEqual(r.map((x) => (x.status === "fulfilled" ? x.value : -1)), Array.from({ length: items }, (_, i) => i));
  }
});

test("--concurrency N: plan reads facts from at most N hosts at once, and apply works on at most N hosts at once, re-reads included", async () => {
  const names = ["master1", "master2", "master3", "worker1", "worker2", "worker3", "storage1"];
  for (const n of [1, 2, 3]) {
    const events: Ev[] = [];
    const transports = hostsOf(names, events);
    // two phases on the same hosts: the second re-reads the facts of every host the first changed
    const phases = [testPhase("first", names, { steps: 2 }), testPhase("second", names)];
    const p = await plan(pcOf(), phases, transports, { concurrency: n });
    assert.equal(events.filter((e) => e.kind === "begin" && e.what === "facts").length, names.length);
    assert.equal(mostHostsInFlight(events, "facts"), n, `plan's fact reads with --concurrency ${n}`);
    events.length = 0;
    const r = await apply(p, transports, { concurrency: n });
    assert.equal(r.changes, names.length * 3);
    assert.equal(mostHostsInFlight(events, "first"), n, `phase first with --concurrency ${n}`);
    assert.equal(events.filter((e) => e.kind === "begin" && e.what === "facts").length, names.length, "every host changed by the first phase is read again");
    assert.equal(mostHostsInFlight(events, "facts"), n, `apply's re-reads with --concurrency ${n}`);
    assert.equal(mostHostsInFlight(events, "second"), n, `phase second with --concurrency ${n}`);
  }
});

test("--concurrency is parsed into the session's limit: given, defaulted, and refused when not 1-1024", () => {
  assert.equal(sessionOptions({ concurrency: "3" }).concurrency, 3);
  assert.equal(sessionOptions({ concurrency: "1" }).concurrency, 1);
  assert.equal(sessionOptions({}).concurrency, 16);
  for (const bad of ["0", "-1", "2.5", "abc", "1025"]) assert.throws(() => sessionOptions({ concurrency: bad }), (e) => e instanceof FmcError && e.code === "USAGE" && e.message.includes(`--concurrency ${bad}`), bad);
});
