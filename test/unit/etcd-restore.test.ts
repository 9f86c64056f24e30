// fmc restore etcd on the seed (three servers, four agents): the runbook's exact order across
// hosts, run through transports that replay real answers (etcd's gateway: test/fixtures/etcd,
// captured from a real etcd 3.4; K3s's cluster-reset output: test/fixtures/k3s-restore), the
// snapshot refused before any host hears a command when its .sha256 is missing or does not
// match, and the stop at the first failure: a failed reset leaves every later step unrun.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "../../src/hosts/command.js";
import type { OsFamilyName } from "../../src/hosts/facts.js";
import { RecordingTransport, type ExecResult, type Responder } from "../../src/hosts/transport.js";
import { readSnapshot, restoreHeading, restoreQuestion, restoreRunbook, RESET_DONE } from "../../src/runbooks/etcd-restore.js";
import { runRunbook, runbookText, stoppedText } from "../../src/runbooks/runbook.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { contextFor, ROOT, tempDir } from "../helpers.js";

const ctx = contextFor();
const fixture = (f: string) => readFileSync(join(ROOT, "test/fixtures", f), "utf8");
const SERVERS = ["master1", "master2", "master3"];
const families = new Map<string, OsFamilyName>(SERVERS.map((s) => [s, "flatcar"]));
const NOW = new Date("2026-11-25T17:45:10.123Z");
const SNAP = "fmc-20261125t170000z-master1-1795626000";

/** A snapshot file and, unless told otherwise, its .sha256 as fmc backup etcd writes it. */
function snapshot(t: { after: (fn: () => void) => void }, sum: "right" | "wrong" | "none" = "right"): string {
  const dir = tempDir(t);
  const file = join(dir, SNAP);
  const data = Buffer.from("etcd snapshot bytes (any content: only its checksum matters here)\n");
  writeFileSync(file, data);
  const sha = createHash("sha256").update(sum === "wrong" ? Buffer.from("something else") : data).digest("hex");
  if (sum !== "none") writeFileSync(`${file}.sha256`, `${sha}  ${SNAP}\n`);
  return file;
}

const ok = (stdout = ""): ExecResult => ({ code: 0, stdout, stderr: "" });
const on = (test: (c: Command) => boolean, r: ExecResult): Responder => (c) => (test(c) ? r : undefined);

/** etcd's answers for readCluster: the member list, and each member's health and status as fmc's probe prints them. */
function etcdResponders(): Responder[] {
  const list = fixture("etcd/member-list.json");
  const urls = (JSON.parse(list) as { members: Array<{ clientURLs: string[] }> }).members.map((m) => m.clientURLs[0]!);
  const b64 = (s: string) => Buffer.from(s.trim()).toString("base64");
  const probe = urls.map((u) => `health ${u} 0 ${b64(fixture("etcd/health.json"))}\nstatus ${u} 0 ${b64(fixture("etcd/status.json"))}\n`).join("");
  return [on((c) => c.shell.includes("/v3/cluster/member/list"), ok(list)), on((c) => c.display.startsWith("etcd health and status of"), ok(probe))];
}

function transports(reset: ExecResult): Map<string, RecordingTransport> {
  const common: Responder[] = [
    on((c) => c.shell.includes("--cluster-reset"), reset),
    on((c) => c.display.includes("kubectl get --raw=/readyz"), ok(fixture("etcd/health.json"))),
    ...etcdResponders(),
  ];
  return new Map(SERVERS.map((s) => [s, new RecordingTransport(s, common)]));
}

test("the runbook on the seed, in K3s's order: check, upload to master1, stop every server, reset there, start and wait, then master2 and master3 one at a time, then etcd read", async (t) => {
  const file = snapshot(t);
  const steps = restoreRunbook(ctx, { snapshot: file, families, now: NOW, waitS: 5, everyS: 1 });
  assert.deepEqual(
    steps.map((s) => `${s.on}: ${s.title}`),
    [
      `this machine: check ${SNAP} against ${SNAP}.sha256`,
      `master1: upload ${SNAP} to master1 (the server that restores it)`,
      "master1: stop K3s on master1",
      "master2: stop K3s on master2",
      "master3: stop K3s on master3",
      `master1: restore ${SNAP} on master1: K3s resets etcd to this one member, restores the snapshot, and exits`,
      "master1: start K3s on master1",
      "master1: wait until master1's API answers /readyz and its etcd member is healthy",
      "master2: set master2's database aside: /var/lib/rancher/k3s/server/db -> /var/lib/rancher/k3s/server/db.before-restore-20261125T174510Z",
      "master2: start K3s on master2: it joins the restored cluster",
      "master2: wait until master2's API answers /readyz and its etcd member is a healthy voting member",
      "master3: set master3's database aside: /var/lib/rancher/k3s/server/db -> /var/lib/rancher/k3s/server/db.before-restore-20261125T174510Z",
      "master3: start K3s on master3: it joins the restored cluster",
      "master3: wait until master3's API answers /readyz and its etcd member is a healthy voting member",
      "master1: read etcd: every server (master1, master2, master3) is a healthy voting member, and no other member is listed",
    ],
  );
  // the commands people see in the plan; Flatcar keeps k3s in /opt/bin, as the install phase puts it
  const text = runbookText(restoreHeading(ctx, readSnapshot(file), NOW), steps);
  assert.match(text, new RegExp(`^ {7}on master1: /opt/bin/k3s server --cluster-reset --cluster-reset-restore-path=/var/lib/rancher/k3s/server/db/snapshots/${SNAP} --server=$`, "m"));
  assert.match(text, /^ {7}on master2: systemctl stop k3s$/m);
  assert.match(text, /^ {7}on master3: mv \/var\/lib\/rancher\/k3s\/server\/db \/var\/lib\/rancher\/k3s\/server\/db\.before-restore-20261125T174510Z$/m);
  assert.match(text, /taken 2026-11-25T17:00:00\.000Z on master1/);
  assert.match(text, /agents worker1, worker2, worker3, storage1 keep running/);
  assert.match(restoreQuestion(ctx, readSnapshot(file)), /^Every server's current etcd data \(master1, master2, master3\) is replaced by fmc-20261125t170000z-master1-1795626000 taken 2026-11-25T17:00:00\.000Z; what changed since is lost\. Restore\?$/);
  // the upload streams the checked file and checks it again on the node
  assert.equal(steps[1]!.command!.upload, file);
  assert.match(steps[1]!.command!.shell, new RegExp(`echo '${readSnapshot(file).sha256}  '"\\$tmp" \\| sha256sum -c --status`));

  const ts = transports(ok(fixture("k3s-restore/cluster-reset-done.txt")));
  const lines: string[] = [];
  const out = await runRunbook(steps, ts, (l) => lines.push(l));
  assert.equal(out.failed, undefined, out.failed?.reason);
  assert.equal(out.done, 15);
  // per host, the commands in their order (etcd reads and readiness looks are not changes)
  const changes = (h: string) => ts.get(h)!.log.filter((c) => !/member\/list|etcd health and status|kubectl get --raw/.test(c.shell + c.display)).map((c) => c.display.split(" (")[0]!);
  assert.deepEqual(changes("master1"), [`upload ${SNAP}`, "systemctl stop k3s", `/opt/bin/k3s server --cluster-reset --cluster-reset-restore-path=/var/lib/rancher/k3s/server/db/snapshots/${SNAP} --server=`, "systemctl start --no-block k3s"]);
  assert.deepEqual(changes("master2"), ["systemctl stop k3s", "mv /var/lib/rancher/k3s/server/db /var/lib/rancher/k3s/server/db.before-restore-20261125T174510Z", "systemctl start --no-block k3s"]);
  assert.deepEqual(changes("master3"), changes("master2"));
  // every server is stopped before the reset; master3 starts only after master2 was waited for
  assert.ok(lines.indexOf("[5/15] master3: stop K3s on master3 ...") < lines.indexOf(`[6/15] master1: restore ${SNAP} on master1: K3s resets etcd to this one member, restores the snapshot, and exits ...`));
  assert.ok(lines.includes("    master2 is a healthy voting member; etcd has 3 members"), lines.join("\n"));
  // the status fixture's leader is master3's member
  assert.equal(lines.at(-2), "    etcd: 3 healthy voting members (master1, master2, master3 leader)");
});

test("a snapshot without its .sha256, or one that does not match it, is refused before any host hears a command", async (t) => {
  assert.throws(() => restoreRunbook(ctx, { snapshot: snapshot(t, "none"), families, now: NOW }), (e: Error) => /has no fmc-20261125t170000z-master1-1795626000\.sha256 beside it: refusing to restore a snapshot that cannot be checked/.test(e.message));
  const bad = restoreRunbook(ctx, { snapshot: snapshot(t, "wrong"), families, now: NOW });
  const ts = transports(ok(fixture("k3s-restore/cluster-reset-done.txt")));
  const out = await runRunbook(bad, ts);
  assert.equal(out.failed?.index, 0);
  assert.match(out.failed!.reason, /does not match its checksum \(SHA-256 [0-9a-f]{64}, fmc-20261125t170000z-master1-1795626000\.sha256 says [0-9a-f]{64}\): refusing to restore it/);
  for (const s of SERVERS) assert.deepEqual(ts.get(s)!.log, [], `${s} heard nothing`);
  assert.match(stoppedText(bad, out), /^stopped at step 1 of 15 .*\nnothing had run before it; the 14 step\(s\) after it did not run$/);
});

test("a failed cluster reset stops the run there: no server is started, no database set aside", async (t) => {
  const steps = restoreRunbook(ctx, { snapshot: snapshot(t), families, now: NOW });
  const ts = transports({ code: 1, stdout: fixture("k3s-restore/cluster-reset-server-url.txt"), stderr: "" });
  const out = await runRunbook(steps, ts);
  assert.equal(out.failed?.index, 5);
  assert.match(out.failed!.reason, /^exit 1: FATA\[0000\] cannot perform cluster-reset while server URL is set/);
  assert.match(stoppedText(steps, out), /^stopped at step 6 of 15 \(restore .*\) on master1: exit 1: FATA.*\nsteps 1-5 are done; the 9 step\(s\) after it did not run$/s);
  for (const s of SERVERS) assert.ok(!ts.get(s)!.log.some((c) => /systemctl start|before-restore/.test(c.shell)), `${s} was neither started nor had its data moved`);
  assert.equal(ts.get("master1")!.log.at(-1)!.display.split(" ")[1], "server");
  // a reset that exits 0 without K3s's words is not taken for a restore either
  const quiet = transports(ok("something else\n"));
  const out2 = await runRunbook(steps, quiet);
  assert.equal(out2.failed?.index, 5);
  assert.equal(out2.failed!.reason, `K3s exited 0 without saying "${RESET_DONE}"`);
});

test("on Debian-like servers the binary is /usr/local/bin/k3s; with etcd-s3 in the spec the reset reads the local file (--etcd-s3=false)", (t) => {
  const debian = new Map<string, OsFamilyName>(SERVERS.map((s) => [s, "debian-like"]));
  const s3 = contextFor(SEED_YAML.replace("  snapshotSchedule:", "  etcdS3: { endpoint: s3.example.com, bucket: fmc-etcd, credentialsFile: /etc/fmc/etcd-s3.env }\n  snapshotSchedule:"));
  assert.equal(s3.spec.k3s.etcdS3?.bucket, "fmc-etcd");
  const steps = restoreRunbook(s3, { snapshot: snapshot(t), families: debian, now: NOW });
  assert.match(steps[5]!.command!.display, /^\/usr\/local\/bin\/k3s server --cluster-reset --cluster-reset-restore-path=\S+ --server= --etcd-s3=false$/);
  assert.throws(() => restoreRunbook(ctx, { snapshot: snapshot(t), families: new Map(), now: NOW }), /master1: its OS family is not known/);
});
