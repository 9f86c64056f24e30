// Lab VMs, the pure parts: QEMU's argv (checked by QEMU itself, paused before the guest
// runs), the config disk (made by mkfs.ext4 -d, read back with debugfs), the image's
// cache key. Real boots are the lab's tests (test/root).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CIDATA_SERIAL, CONFIG_SERIAL, IGNITION_FW_CFG_NAMES, TCG_KERNEL_ARGS, VM_IMAGE_FILES, VM_MASKED_GENERATORS, hostKeyFromConsole, isOurQemu, macOfAddress, makeConfigDisk, networkdFiles, qemuArgs, stageVmConfig, tapName, vmConfigFiles, vmImageKey, type QemuSpec, type VmConfig,
} from "../../src/lab/vm.js";

const has = (tool: string) => spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0;

const base: QemuSpec = {
  label: "fmclab-storage1",
  accel: "tcg",
  memoryMiB: 1024,
  vcpus: 1,
  kernel: "/var/lib/fmc-lab/vm-0123456789ab/vmlinuz",
  initrd: "/var/lib/fmc-lab/vm-0123456789ab/initrd.img",
  rootDisk: "/var/lib/fmc-lab/labs/seed/storage1/root.qcow2",
  dataDisks: [{ name: "data", path: "/var/lib/fmc-lab/labs/seed/storage1/disk-data.img" }, { name: "logs", path: "/var/lib/fmc-lab/labs/seed/storage1/disk-logs.img" }],
  configDisk: "/var/lib/fmc-lab/labs/seed/storage1/config.img",
  nics: [{ tap: "vt12345678a0", mac: "02:fc:0a:11:04:1b" }],
  console: "/var/lib/fmc-lab/labs/seed/storage1/console.log",
  qmp: "/var/lib/fmc-lab/labs/seed/storage1/qmp.sock",
};

/** The values of one repeated option, in order. */
const values = (args: string[], opt: string) => args.flatMap((a, i) => (args[i - 1] === opt ? [a] : []));

test("qemu args: root disk vda, data disks vdb… in spec order, config disk last and read-only, one virtio NIC per tap", () => {
  const args = qemuArgs(base);
  assert.deepEqual(values(args, "-device").filter((d) => d.startsWith("virtio-blk-pci")), [
    "virtio-blk-pci,drive=root,serial=root",
    "virtio-blk-pci,drive=data0,serial=data",
    "virtio-blk-pci,drive=data1,serial=logs",
    `virtio-blk-pci,drive=config,serial=${CONFIG_SERIAL}`,
  ]);
  const drives = values(args, "-drive");
  assert.match(drives[0]!, /^file=\/var\/lib\/fmc-lab\/labs\/seed\/storage1\/root\.qcow2,if=none,id=root,format=qcow2/);
  assert.match(drives[1]!, /disk-data\.img,if=none,id=data0,format=raw/);
  assert.match(drives[3]!, /config\.img,if=none,id=config,format=raw,readonly=on$/);
  assert.deepEqual(values(args, "-netdev"), ["tap,id=net0,ifname=vt12345678a0,script=no,downscript=no"]);
  assert.ok(values(args, "-device").includes("virtio-net-pci,netdev=net0,mac=02:fc:0a:11:04:1b"));
  assert.deepEqual(values(args, "-name"), ["fmclab-storage1,process=fmclab-storage1"]);
  assert.deepEqual(values(args, "-accel"), ["tcg"]);
  assert.deepEqual(values(args, "-serial"), ["chardev:console"]);
  assert.deepEqual(values(args, "-chardev"), ["file,id=console,path=/var/lib/fmc-lab/labs/seed/storage1/console.log", "socket,id=qmp,path=/var/lib/fmc-lab/labs/seed/storage1/qmp.sock,server=on,wait=off"]);
  const append = values(args, "-append")[0]!.split(" ");
  assert.ok(append.includes("console=ttyS0") && append.includes("root=/dev/vda"));
  // under emulation the guest keeps the TSC (its HPET fallback makes every clock read a device access)
  for (const p of TCG_KERNEL_ARGS) assert.ok(append.includes(p), p);
  assert.ok(!values(qemuArgs({ ...base, accel: "kvm" }), "-append")[0]!.includes("clocksource="), "a KVM guest keeps its own clock choice");
  assert.ok(!args.includes("-no-reboot"), "a guest reboot must reboot, not end QEMU");
  assert.deepEqual([values(args, "-m")[0], values(args, "-smp")[0]], ["1024", "1"]);
});

test("qemu args: commas in paths are doubled (QEMU's escape); unsafe names are refused", () => {
  const args = qemuArgs({ ...base, rootDisk: "/srv/a,b/root.qcow2" });
  assert.equal(values(args, "-drive")[0], "file=/srv/a,,b/root.qcow2,if=none,id=root,format=qcow2,discard=unmap");
  const bad: Array<[string, Partial<QemuSpec>]> = [
    ["label with a comma", { label: "fmclab-x,process=y" }],
    ["label with a space", { label: "fmclab x" }],
    ["tap longer than 15 bytes", { nics: [{ tap: "a-very-long-tap-name", mac: "02:fc:0a:11:04:1b" }] }],
    ["tap with an option", { nics: [{ tap: "t0,script=/x", mac: "02:fc:0a:11:04:1b" }] }],
    ["two NICs on one tap", { nics: [{ tap: "t0", mac: "02:fc:0a:11:04:1b" }, { tap: "t0", mac: "02:fc:0a:11:04:1c" }] }],
    ["MAC with an option", { nics: [{ tap: "t0", mac: "02:fc:0a:11:04:1b,vhost=on" }] }],
    ["data disk named root", { dataDisks: [{ name: "root", path: "/x/d.img" }] }],
    ["data disk named like the config disk", { dataDisks: [{ name: CONFIG_SERIAL, path: "/x/d.img" }] }],
    ["two data disks of one name", { dataDisks: [{ name: "d", path: "/x/a.img" }, { name: "d", path: "/x/b.img" }] }],
    ["relative path", { configDisk: "config.img" }],
    ["path with ..", { kernel: "/var/lib/../vmlinuz" }],
    ["kernel path with a comma (-kernel has no escape)", { kernel: "/srv/a,b/vmlinuz" }],
    ["path with a newline", { console: "/tmp/a\nb" }],
    ["kernel parameter with a space", { append: ["init=/bin/sh quiet"] }],
    ["memory", { memoryMiB: 0 }],
    ["vCPUs", { vcpus: 1.5 }],
    ["CPU model with an option", { cpu: "max,+x" }],
    ["fw_cfg name outside opt/", { fwCfg: [{ name: "etc/boot-menu-wait", file: "/x/c.ign" }] }],
    ["fw_cfg name with an option", { fwCfg: [{ name: "opt/com.coreos/config,file=/etc/shadow", file: "/x/c.ign" }] }],
    ["fw_cfg file relative", { fwCfg: [{ name: "opt/com.coreos/config", file: "c.ign" }] }],
    ["NoCloud seed path with ..", { cidata: "/x/../cidata.iso" }],
  ];
  for (const [what, change] of bad) assert.throws(() => qemuArgs({ ...base, ...change }), /invalid/, what);
});

test("qemu args: a Flatcar VM's Ignition config through fw_cfg under Flatcar's and upstream's names; a NoCloud seed read-only after the config disk", () => {
  const args = qemuArgs({ ...base, fwCfg: IGNITION_FW_CFG_NAMES.map((name) => ({ name, file: "/var/lib/fmc-lab/labs/seed/storage1/config,x.ign" })), cidata: "/var/lib/fmc-lab/labs/seed/pg/cidata.iso" });
  assert.deepEqual(values(args, "-fw_cfg"), [
    "name=opt/org.flatcar-linux/config,file=/var/lib/fmc-lab/labs/seed/storage1/config,,x.ign",
    "name=opt/com.coreos/config,file=/var/lib/fmc-lab/labs/seed/storage1/config,,x.ign",
  ]);
  const disks = values(args, "-device").filter((d) => d.startsWith("virtio-blk-pci"));
  assert.deepEqual(disks.slice(-2), [`virtio-blk-pci,drive=config,serial=${CONFIG_SERIAL}`, `virtio-blk-pci,drive=cidata,serial=${CIDATA_SERIAL}`], "the seed after the config disk: data disks keep vdb…");
  assert.match(values(args, "-drive").at(-1)!, /cidata\.iso,if=none,id=cidata,format=raw,readonly=on$/);
  assert.deepEqual(values(qemuArgs(base), "-fw_cfg"), [], "no first-boot files, no fw_cfg");
});

test("config: a VM booted from its first-boot files gets neither hostname nor networkd files from the lab; cloud-init's VM no host keys either", () => {
  const paths = (c: VmConfig) => vmConfigFiles(c).map((f) => f.path);
  const ign = paths({ ...config, firstBoot: "ignition" });
  assert.ok(!ign.includes("/etc/hostname") && !ign.some((p) => p.startsWith("/etc/systemd/network/")), ign.join(" "));
  assert.ok(ign.includes("/etc/ssh/ssh_host_ed25519_key") && ign.includes("/root/.ssh/authorized_keys"));
  const ci = paths({ ...config, firstBoot: "cloud-init" });
  assert.ok(!ci.some((p) => p.startsWith("/etc/ssh/")), "cloud-init makes the host's keys");
  assert.ok(ci.includes("/root/.ssh/authorized_keys") && ci.includes("/etc/hosts"));
  assert.ok(paths(config).includes("/etc/hostname"), "the lab's own shaping is unchanged");
});

test("console: the ed25519 key of cloud-init's last host-keys block, serial line endings and all", () => {
  const block = (k: string) => `-----BEGIN SSH HOST KEY KEYS-----\r\necdsa-sha2-nistp256 AAAAE2VjZHNh root@pg\r\nssh-ed25519 ${k} root@pg\r\n-----END SSH HOST KEY KEYS-----\r\n`;
  const log = `[  OK  ] Started ssh.service\r\nci-info: no authorized SSH keys\r\n${block("AAAAC3NzaC1lZDI1NTE5AAAAIOld")}boot again\r\n${block("AAAAC3NzaC1lZDI1NTE5AAAAINew+/=")}`;
  assert.equal(hostKeyFromConsole(log), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINew+/=");
  assert.equal(hostKeyFromConsole("-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAA"), undefined, "a block still being written is not read");
  assert.equal(hostKeyFromConsole("-----BEGIN SSH HOST KEY KEYS-----\nssh-rsa AAAAB3 x\n-----END SSH HOST KEY KEYS-----\n"), undefined, "no ed25519 key, no answer");
  assert.equal(hostKeyFromConsole("ssh-ed25519 AAAAC3Nza root@pg\n"), undefined, "a key outside the block (anyone's output) is not taken");
});

test("qemu args: QEMU itself accepts them (machine built, paused before the guest runs); stopVm's pid check knows it", { skip: !has("qemu-system-x86_64") || !has("qemu-img") }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "fmc-vm,"));
  try {
    const f = (n: string) => join(dir, n);
    writeFileSync(f("base.img"), "");
    truncateSync(f("base.img"), 64 * 1024 ** 2);
    assert.equal(spawnSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", f("base.img"), "-F", "raw", f("root.qcow2")]).status, 0);
    for (const n of ["data.img", "config.img", "cidata.iso"]) {
      writeFileSync(f(n), "");
      truncateSync(f(n), 1024 ** 2);
    }
    writeFileSync(f("config.ign"), '{"ignition":{"version":"3.3.0"}}');
    const args = qemuArgs({ ...base, rootDisk: f("root.qcow2"), dataDisks: [{ name: "data", path: f("data.img") }], configDisk: f("config.img"), cidata: f("cidata.iso"), fwCfg: IGNITION_FW_CFG_NAMES.map((name) => ({ name, file: f("config.ign") })), nics: [], console: f("console.log"), qmp: f("qmp.sock") });
    // -S: the machine is built (every -drive/-device parsed and opened), the CPU never starts;
    // direct kernel boot reads the kernel at reset, so use QEMU's own firmware here instead
    const noKernel = args.filter((a, i) => !["-kernel", "-initrd", "-append"].includes(a) && !["-kernel", "-initrd", "-append"].includes(args[i - 1]!));
    const child = spawn("qemu-system-x86_64", [...noKernel, "-S"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = await new Promise<number | null>((res) => {
      const t = setTimeout(() => res(null), 1500);
      child.once("exit", (code) => {
        clearTimeout(t);
        res(code);
      });
    });
    assert.equal(exited, null, `QEMU refused the arguments: ${stderr}`);
    assert.equal(isOurQemu(child.pid!, dir), true, "the QEMU booting this directory's disk");
    assert.equal(isOurQemu(child.pid!, `${dir}x`), false, "a QEMU of another directory is not ours");
    assert.equal(isOurQemu(process.pid, dir), false, "a process that is not QEMU is never ours");
    child.kill("SIGKILL");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const keys = { ssh_host_ed25519_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n", "ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAC3Nza host\n" };
const config: VmConfig = {
  hostname: "firewall9",
  nics: [
    { bridge: "uplink", mac: "02:fc:c6:33:64:02", address: "198.51.100.2/30", ifname: "eth0" },
    { bridge: "s0", mac: "02:fc:0a:11:02:01", address: "10.17.2.1/24", ifname: "eth1" },
  ],
  defaultVia: "198.51.100.1",
  authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample admin@laptop"],
  hostKeys: keys,
  files: [{ path: "/etc/hosts", mode: 0o644, content: "127.0.0.1 localhost\n" }],
};

test("config: networkd names each link and addresses it by MAC; the default route only where its gateway is on-link", () => {
  const files = networkdFiles(config.nics, config.defaultVia);
  const byPath = Object.fromEntries(files.map((f) => [f.path, f.content]));
  assert.deepEqual(Object.keys(byPath).sort(), ["/etc/systemd/network/10-fmc-eth0.link", "/etc/systemd/network/10-fmc-eth0.network", "/etc/systemd/network/10-fmc-eth1.link", "/etc/systemd/network/10-fmc-eth1.network"]);
  const ini = (text: string) => Object.fromEntries(text.split("\n").filter((l) => /^\w+=/.test(l)).map((l) => l.split("=") as [string, string]));
  assert.deepEqual(ini(byPath["/etc/systemd/network/10-fmc-eth1.link"]!), { MACAddress: "02:fc:0a:11:02:01", Name: "eth1" });
  assert.deepEqual(ini(byPath["/etc/systemd/network/10-fmc-eth0.network"]!), { MACAddress: "02:fc:c6:33:64:02", Address: "198.51.100.2/30", Gateway: "198.51.100.1", LinkLocalAddressing: "no", IPv6AcceptRA: "no" });
  assert.equal(ini(byPath["/etc/systemd/network/10-fmc-eth1.network"]!).Gateway, undefined);
  assert.throws(() => networkdFiles(config.nics, "10.99.0.1"), /on no NIC's subnet/);
  assert.throws(() => networkdFiles([{ ...config.nics[0]!, mac: "03:fc:c6:33:64:02" }]), /unicast MAC/);
  assert.throws(() => networkdFiles([{ ...config.nics[0]!, address: "198.51.100.2" }]), /address\/prefix/);
  assert.throws(() => networkdFiles([config.nics[0]!, { ...config.nics[1]!, mac: config.nics[0]!.mac }]), /unique/);
});

test("config: hostname, host keys and authorized_keys with their modes; bad input refused", () => {
  const files = vmConfigFiles(config);
  const mode = Object.fromEntries(files.map((f) => [f.path, f.mode]));
  assert.equal(mode["/etc/ssh/ssh_host_ed25519_key"], 0o600);
  assert.equal(mode["/etc/ssh/ssh_host_ed25519_key.pub"], 0o644);
  assert.equal(mode["/root/.ssh/authorized_keys"], 0o600);
  assert.equal(files.find((f) => f.path === "/etc/hostname")!.content, "firewall9\n");
  assert.throws(() => vmConfigFiles({ ...config, hostname: "Bad_Name" }), /hostname/);
  assert.throws(() => vmConfigFiles({ ...config, hostKeys: { "ssh_host_ed25519_key.pub": "x" } }), /ed25519 pair/);
  assert.throws(() => vmConfigFiles({ ...config, hostKeys: { ...keys, "../shadow": "x" } }), /host key file name/);
  assert.throws(() => vmConfigFiles({ ...config, authorizedKeys: ["ssh-ed25519 AAAA\ncommand=\"sh\" ssh-rsa B"] }), /authorized key/);
  assert.throws(() => vmConfigFiles({ ...config, files: [{ path: "/etc/../root/x", mode: 0o600, content: "" }] }), /file path/);
  assert.throws(() => vmConfigFiles({ ...config, files: [{ path: "/etc/hostname", mode: 0o644, content: "other\n" }] }), /appears twice/);
});

test("config disk: mkfs.ext4 -d keeps every file's content and mode, and the guest's directory modes", { skip: !has("mkfs.ext4") || !has("debugfs") }, () => {
  const dir = mkdtempSync(join(tmpdir(), "fmc-vm-"));
  try {
    const files = vmConfigFiles(config);
    const id = stageVmConfig(join(dir, "stage"), files);
    makeConfigDisk(join(dir, "stage"), join(dir, "config.img"));
    const debugfs = (req: string) => {
      const r = spawnSync("debugfs", ["-R", req, join(dir, "config.img")], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    const modeOf = (p: string) => debugfs(`stat ${p}`).match(/Mode:\s+(\d+)/)![1];
    assert.equal(statSync(join(dir, "config.img")).mode & 0o777, 0o600, "the disk holds private host keys");
    assert.equal(debugfs("cat /id").trim(), id);
    assert.equal(debugfs("cat /root/etc/hostname"), "firewall9\n");
    assert.equal(debugfs("cat /root/root/.ssh/authorized_keys"), `${config.authorizedKeys[0]}\n`);
    assert.match(debugfs("cat /root/etc/systemd/network/10-fmc-eth0.network"), /^Gateway=198\.51\.100\.1$/m);
    assert.equal(modeOf("/root/root/.ssh/authorized_keys"), "0600");
    assert.equal(modeOf("/root/etc/ssh/ssh_host_ed25519_key"), "0600");
    assert.equal(modeOf("/root/etc/ssh/ssh_host_ed25519_key.pub"), "0644");
    // cp -a onto the guest's / also copies directory modes: /root stays private
    assert.equal(modeOf("/root/root"), "0700");
    assert.equal(modeOf("/root/root/.ssh"), "0700");
    assert.equal(modeOf("/root/etc"), "0755");
    assert.equal(modeOf("/root/etc/systemd/network"), "0755");
    assert.match(debugfs("stat /root/etc/ssh/ssh_host_ed25519_key"), /User:\s+0\s+Group:\s+0/);
    // a changed config is a new id: the guest applies it; the same config keeps its id
    assert.equal(stageVmConfig(join(dir, "stage2"), files), id);
    assert.notEqual(stageVmConfig(join(dir, "stage3"), vmConfigFiles({ ...config, hostname: "firewall8" })), id);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("image: the guest's config script is valid sh; the cache key follows the root filesystem, packages and baked files", () => {
  const script = VM_IMAGE_FILES.find((f) => f.path === "/usr/local/lib/fmc-lab/vm-config")!;
  const r = spawnSync("sh", ["-n"], { input: script.content, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const key = vmImageKey("/var/lib/fmc-lab/rootfs-aaaaaaaaaaaa");
  assert.match(key, /^[0-9a-f]{12}$/);
  assert.equal(vmImageKey("/var/lib/fmc-lab/rootfs-aaaaaaaaaaaa"), key);
  assert.notEqual(vmImageKey("/var/lib/fmc-lab/rootfs-bbbbbbbbbbbb"), key, "a new root filesystem is a new image");
  assert.notEqual(vmImageKey("/var/lib/fmc-lab/rootfs-aaaaaaaaaaaa", VM_IMAGE_FILES, ["linux-image-cloud-amd64", "initramfs-tools"]), key);
  const changed = VM_IMAGE_FILES.map((f) => (f.path === "/etc/fstab" ? { ...f, content: f.content + "# changed\n" } : f));
  assert.notEqual(vmImageKey("/var/lib/fmc-lab/rootfs-aaaaaaaaaaaa", changed), key, "a changed baked file is a new image");
  const remoded = VM_IMAGE_FILES.map((f) => (f.path === "/etc/fstab" ? { ...f, mode: 0o600 } : f));
  assert.notEqual(vmImageKey("/var/lib/fmc-lab/rootfs-aaaaaaaaaaaa", remoded), key);
  // generators the lab's VMs need stay: fstab (the root), the NFS server's exports, rpc_pipefs, PostgreSQL's clusters
  for (const g of ["systemd-fstab-generator", "nfs-server-generator", "rpc-pipefs-generator", "postgresql-generator"]) assert.ok(!(VM_MASKED_GENERATORS as readonly string[]).includes(g), g);
  assert.ok(VM_MASKED_GENERATORS.every((g) => /^[a-z0-9-]+-generator$/.test(g)));
});

test("MACs and taps: stable per address and per VM, short enough for the kernel", () => {
  assert.equal(macOfAddress("10.17.4.27"), "02:fc:0a:11:04:1b");
  assert.throws(() => macOfAddress("10.17.4"), /IPv4/);
  assert.equal(tapName("fmclab-storage1", 0), tapName("fmclab-storage1", 0));
  assert.notEqual(tapName("fmclab-storage1", 0), tapName("fmclab-storage1", 1));
  assert.notEqual(tapName("fmclab-storage1", 0), tapName("fmclab-postgresql1", 0));
  assert.ok(tapName("fmclab-a-very-long-host-name-indeed", 9).length <= 15);
  assert.doesNotThrow(() => qemuArgs({ ...base, nics: [{ tap: tapName("fmclab-a-very-long-host-name-indeed", 9), mac: "02:fc:0a:11:04:1b" }] }));
});
