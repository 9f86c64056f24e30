// fmc reset's order on the seed (agents first, the servers with the first one last, the
// bootstrap record forgotten only after every node is clean), and that an unreachable node
// stops the run before the record is forgotten.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resetRunbook, resetWarning, K3S_PATHS } from "../../src/ops/reset.js";
import { runRunbook } from "../../src/ops/runbook.js";
import { RecordingTransport } from "../../src/hosts/transport.js";
import { contextFor } from "../helpers.js";

const ctx = contextFor();

test("agents first, then the servers with the first one last; the bootstrap record goes at the very end", async () => {
  let forgotten = 0;
  const steps = resetRunbook(ctx, () => true, async () => void forgotten++);
  assert.deepEqual(steps.map((s) => s.on), ["worker1", "worker2", "worker3", "storage1", "master3", "master2", "master1", "this machine"]);
  const transports = new Map(steps.filter((s) => s.command).map((s) => [s.on, new RecordingTransport(s.on)]));
  const out = await runRunbook(steps, transports);
  assert.equal(out.failed, undefined);
  assert.equal(forgotten, 1);
  const server = transports.get("master1")!.log[0]!.shell;
  const agent = transports.get("worker1")!.log[0]!.shell;
  assert.match(server, /^systemctl disable --now k3s\.service /m);
  assert.match(agent, /^systemctl disable --now k3s-agent\.service /m);
  for (const p of K3S_PATHS) assert.ok(server.includes(` ${p}`), p);
  // the script proves its own result: it fails when the unit still runs or a path is left
  assert.match(server, /is still running" >&2; exit 1/);
  assert.match(resetWarning(ctx), /^This destroys the K3s cluster flatcarmicrocloud on worker1, worker2, worker3, storage1, master3, master2, master1:/);
});

test("a node that does not answer stops the reset before the cluster is forgotten", async () => {
  let forgotten = 0;
  const steps = resetRunbook(ctx, (h) => h !== "worker2", async () => void forgotten++);
  const transports = new Map(steps.filter((s) => s.command).map((s) => [s.on, new RecordingTransport(s.on)]));
  const out = await runRunbook(steps, transports);
  assert.equal(out.done, 1);
  assert.match(out.failed!.reason, /worker2 is unreachable/);
  assert.equal(forgotten, 0);
  assert.equal(transports.get("master1")!.log.length, 0);
});
