// The lab's VM tier: a host that needs a kernel of its own (here storage1) runs as a QEMU
// VM (software emulation) on the same segment as the container hosts, with the same
// keys, known_hosts and inventory, so plan/apply don't know the difference. Real reboots of
// lab VMs (a new boot, SSH back, the disk kept) are proven in data.test.ts, whose storage1 and
// postgresql1 reboot under load. Needs root.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clearStaleLab, fmc, ROOT } from "../helpers.js";
import { labExec } from "../../src/lab/lab.js";

let dir = "";
const run = (...args: string[]) => fmc([...args], dir);
const onVm = (...args: string[]) => labExec("storage1", args, { timeoutMs: 60_000 });
const qemus = () => spawnSync("pgrep", ["-f", "qemu-system-x86_64 -name fmclab-"], { encoding: "utf8" }).stdout.trim();

const PREFIX = join(tmpdir(), "fmc-vm-e2e-");
let ours = false;

before(() => {
  dir = mkdtempSync(PREFIX);
  copyFileSync(join(ROOT, "test/fixtures/lab-vm.yaml"), join(dir, "cluster.yaml"));
  clearStaleLab(dir);
  const up = run("lab", "up", "--only", "storage,loadbalancer");
  assert.equal(up.status, 0, up.stderr);
  ours = true;
  assert.match(up.stderr, /storage1: VM fmclab-storage1 \(pid \d+, (software emulation \(TCG\)|KVM)/);
});

after(() => {
  const down = ours ? run("lab", "down", "--force") : { status: 0, stderr: "" };
  rmSync(dir, { recursive: true, force: true });
  assert.equal(down.status, 0, down.stderr);
  assert.equal(qemus(), "", "no QEMU left behind");
});

test("a storage host is a VM with its own kernel and the spec's data disk; lab exec reaches it over SSH", () => {
  assert.notEqual(qemus(), "", "storage1 runs in QEMU");
  const kernel = onVm("uname", "-r");
  assert.equal(kernel.status, 0, kernel.stderr);
  assert.notEqual(kernel.stdout.trim(), spawnSync("uname", ["-r"], { encoding: "utf8" }).stdout.trim(), "not this machine's kernel");
  // storage.device /dev/vdb is the spec's 20 GiB data disk
  assert.equal(onVm("lsblk", "-dnbo", "SIZE", "/dev/vdb").stdout.trim(), String(20 * 1024 ** 3));
  // what containers can't do: load kernel modules (the NFS server's)
  assert.equal(onVm("modprobe", "nfsd").status, 0);
  assert.match(onVm("cat", "/proc/filesystems").stdout, /\tnfsd$/m);
  // the exit code comes back through fmc lab exec
  assert.equal(run("lab", "exec", "storage1", "--", "sh", "-c", "exit 5").status, 5);
});

test("the VM and a container share the segment; plan and apply treat the VM like any host", () => {
  assert.equal(labExec("lb1", ["bash", "-c", "echo > /dev/tcp/10.32.4.27/22"], { timeoutMs: 10_000 }).status, 0, "lb1 reaches storage1's sshd");
  const a = run("apply", "--yes", "--phase", "base");
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stderr, /\[storage1\] base: /);
  assert.equal(onVm("hostname").stdout.trim(), "storage1");
  assert.equal(run("plan", "--phase", "base", "--detailed-exitcode").status, 0);
});
