// fmc reset's order on the seed (agents first, the servers with the first one last, the
// bootstrap record forgotten only after every node is clean), and that an unreachable node
// stops the run before the record is forgotten.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resetRunbook, resetWarning, K3S_PATHS } from "../../src/runbooks/reset.js";
import { runRunbook } from "../../src/runbooks/runbook.js";
import { RecordingTransport } from "../../src/hosts/transport.js";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { contextFor, requireTool, tempDir } from "../helpers.js";

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

// --- the node's script on a real kernel, in a private mount namespace ------------------------
// /etc, /run, /var/lib, /usr/local/bin and /opt are fresh tmpfs there (the real ones are never
// touched), systemctl and pgrep are stand-ins; a pod's volume (Longhorn's replica, an NFS
// share) is a bind mount of a directory outside K3s's paths, as the kubelet's volume mounts are.

const VOLUME = "/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc 1/mount";

/** Runs master1's reset script with a pod volume mounted below the kubelet's directory; `umountFails` makes umount a stand-in that fails. */
function resetWithVolume(t: { after: (fn: () => void) => void }, o: { umountFails?: boolean } = {}) {
  requireTool("unshare");
  const dir = tempDir(t);
  const steps = resetRunbook(ctx, () => true, async () => undefined);
  writeFileSync(join(dir, "reset"), steps.find((s) => s.on === "master1")!.command!.shell);
  mkdirSync(join(dir, "bin"));
  writeFileSync(join(dir, "bin", "systemctl"), `#!/bin/sh\ncase "$1" in is-active) exit 3 ;; esac\nexit 0\n`, { mode: 0o755 });
  writeFileSync(join(dir, "bin", "pgrep"), "#!/bin/sh\nexit 1\n", { mode: 0o755 });
  if (o.umountFails) writeFileSync(join(dir, "bin", "umount"), '#!/bin/sh\necho "umount: $2: target is busy." >&2\nexit 32\n', { mode: 0o755 });
  const replica = join(dir, "replica");
  mkdirSync(replica);
  writeFileSync(join(replica, "volume-head-000.img"), "a replica's data\n");
  const scenario = `
set -eu
# awk is reached through /etc/alternatives on Debian, which the tmpfs on /etc hides
ln -s "$(readlink -f "$(command -v awk)")" ${JSON.stringify(join(dir, "bin", "awk"))}
for m in /etc /run /var/lib /usr/local/bin; do mount -t tmpfs none "$m"; done
if [ -d /opt ]; then mount -t tmpfs none /opt; fi
mkdir -p /var/lib/rancher/k3s/server/db /etc/rancher/k3s ${JSON.stringify(VOLUME)}
echo etcd > /var/lib/rancher/k3s/server/db/state
mount --bind ${JSON.stringify(replica)} ${JSON.stringify(VOLUME)}
set +e
PATH=${JSON.stringify(join(dir, "bin"))}:$PATH bash ${JSON.stringify(join(dir, "reset"))}
echo "exit $?"
ls /var/lib/rancher 2>/dev/null
`;
  writeFileSync(join(dir, "scenario"), scenario);
  const r = spawnSync("unshare", ["--mount", "--propagation", "private", "--net", "bash", join(dir, "scenario")], { encoding: "utf8", timeout: 20_000 });
  return { r, replica: join(replica, "volume-head-000.img") };
}

test("reset on a node: a pod's volume below the kubelet's directory (its path with a space) is unmounted, never emptied; K3s's files go", (t) => {
  const { r, replica } = resetWithVolume(t);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(existsSync(replica) && readFileSync(replica, "utf8"), "a replica's data\n", "the volume's data is untouched");
  assert.match(r.stdout, /^exit 0\n/, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /k3s/, "K3s's data directory is gone");
});

test("reset on a node: a volume that stays mounted stops the reset before anything is removed, and is never removed through", (t) => {
  const { r, replica } = resetWithVolume(t, { umountFails: true });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(existsSync(replica) && readFileSync(replica, "utf8"), "a replica's data\n", "the volume's data is untouched");
  assert.match(r.stdout, /^exit 1\n/, r.stdout + r.stderr);
  assert.match(r.stderr, /still mounted below K3s's paths, so nothing was removed: \/var\/lib\/kubelet\/pods\/p1\/volumes\/kubernetes\.io~csi\/pvc 1\/mount/);
  assert.match(r.stdout, /^k3s$/m, "nothing was removed");
  // the last line of defence, whatever appears meanwhile: rm stays on each path's file system
  assert.match(resetRunbook(ctx, () => true, async () => undefined)[0]!.command!.shell, /^rm -rf --one-file-system \/etc\/rancher\/k3s /m);
});
