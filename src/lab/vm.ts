// Lab hosts that need a kernel of their own (kernel NFS, device-mapper, a real reboot) run
// as QEMU virtual machines on the lab's segments. This machine's kernel has no modules, so
// a container can't be such a host; a VM boots Debian's own kernel from an image made of
// the lab's root filesystem (rootfs.ts) plus `linux-image-amd64`, built once and cached
// beside it. Each VM gets a copy-on-write disk over that image, sparse virtio data disks
// (the first is /dev/vdb), one tap per NIC on its segment's bridge (QEMU runs inside the
// switch namespace), and a small read-only config disk that a oneshot unit baked into the
// image applies early at first boot: what the lab adds (its login key, the K3s stand-in)
// and, for a VM the spec gives no first-boot files, its identity: hostname, addresses
// (systemd-networkd, matched by MAC), default route, SSH host keys. A VM that has them
// boots from them as libvirt hands them over: Ignition through fw_cfg, run by the real
// Ignition at first boot (IGNITION_SCRIPT); a NoCloud ISO disk, run by the real cloud-init.
// No nbd, no kernel modules here.
// KVM is used when a tiny probe boots under it; otherwise software emulation (TCG).
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, normalize } from "node:path";
import { controlChar } from "../model/formats.js";
import { contains, networkOf, parseIp } from "../model/net.js";
import { FmcError } from "../errors.js";
import { alive, cmdlineOf, sleep } from "./proc.js";
import { LAB_ROOT, debianMirror, inRoot, prepareRootfs, rootfsPath } from "./rootfs.js";
import { DEBIAN_POSTGRES, postgresLayout } from "../hosts/os.js";

const QEMU = "qemu-system-x86_64";
/** The Debian release of the lab's root filesystem (bookworm), for its PostgreSQL version. */
const LAB_DEBIAN = "12";
/**
 * What the storage, database and longhorn-prereqs phases install on Debian, installed in the
 * image at native speed: apt inside a software-emulated VM took about 5 minutes for them on
 * every fresh lab (measured 2026-12-03: ≈ 85 s for LVM and the NFS server on storage1, ≈ 150 s
 * for PostgreSQL on postgresql1, more for Longhorn's packages), which every lab test paid
 * again. apply finds them installed and does the rest; the lab's containers still install
 * theirs with apt during apply. PostgreSQL's own default cluster stays off, as the database
 * phase arranges before it installs the package (the same file, written first). The base
 * phase's node exporter too (≈ 60 s of apt under emulation on postgresql1, measured
 * 2026-12-07); its unit is enabled by the package, and base starts it.
 */
const VM_DATA_PACKAGES = ["lvm2", "xfsprogs", "nfs-kernel-server", "nfs-common", `postgresql-${DEBIAN_POSTGRES[LAB_DEBIAN]}`, "open-iscsi", "cryptsetup", "dmsetup", "prometheus-node-exporter"];
/** Debian's package of the real Ignition (2.14; it depends on libblkid and libc only): a Flatcar VM's first boot runs it. */
const VM_FIRSTBOOT_PACKAGES = ["ignition"];
/**
 * systemd generators a lab VM has no use for (no encrypted, integrity or verity disks, no
 * hibernation, no SysV-only services, no console login, no rc.local), masked
 * as systemd.generator(7) says (a link to /dev/null in /etc). Every daemon-reload runs each
 * generator, and under emulation each costs ≈ 0.2 s: a reload took ≈ 7.5 s on storage1
 * (measured 2026-12-07), and the storage phase reloads once per unit it writes. Kept: fstab,
 * the NFS server's and rpc_pipefs's, PostgreSQL's, and cloud-init's (a VM booted from a
 * NoCloud seed runs cloud-init; the others say cloud-init=disabled on the kernel command line).
 */
export const VM_MASKED_GENERATORS = [
  "systemd-cryptsetup-generator", "systemd-debug-generator", "systemd-getty-generator",
  "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator", "systemd-integritysetup-generator",
  "systemd-rc-local-generator", "systemd-run-generator", "systemd-system-update-generator", "systemd-sysv-generator",
  "systemd-veritysetup-generator",
] as const;
/** Installed in the VM image on top of the lab's root filesystem (from the Debian mirror, at build time). */
const VM_PACKAGES = ["linux-image-amd64", "initramfs-tools", ...VM_DATA_PACKAGES, ...VM_FIRSTBOOT_PACKAGES];
const NO_DEFAULT_CLUSTER = postgresLayout("debian-like", DEBIAN_POSTGRES[LAB_DEBIAN]!, "/var/lib/pgsql").noDefaultCluster!;
/** The image's root filesystem size: sparse, so only what is written takes space. */
const IMAGE_SIZE = "4G";
const VM_BUILD = "v4";
/** The config disk's virtio serial: how the guest finds it without udev. */
export const CONFIG_SERIAL = "fmc-config";
const CONFIG_UNIT = "fmc-lab-vm-config.service";
const CONFIG_SCRIPT = "/usr/local/lib/fmc-lab/vm-config";
/** Where the guest records which config it applied (so a reboot keeps what phases changed). */
const CONFIG_STAMP = "/var/lib/fmc-lab/vm-config-applied";
const IGNITION_UNIT = "fmc-lab-ignition.service";
const IGNITION_SCRIPT = "/usr/local/lib/fmc-lab/ignition-firstboot";
/** Where Debian's package puts the real Ignition (for its dracut module: not on PATH). */
const IGNITION_IN_IMAGE = "/usr/lib/dracut/modules.d/30ignition/ignition";
/**
 * The fw_cfg names a Flatcar VM's Ignition config is handed over under, as libvirt does:
 * Flatcar's own (its Ignition reads it) and upstream's (Debian's Ignition 2.14 reads
 * /sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw). The same file under both.
 */
export const IGNITION_FW_CFG_NAMES = ["opt/org.flatcar-linux/config", "opt/com.coreos/config"] as const;
/** Kernel parameters of a Flatcar VM's first boot (Flatcar's GRUB sets them while /boot/flatcar/first_boot exists). */
const IGNITION_KERNEL_ARGS = ["ignition.firstboot", "ignition.platform.id=qemu"] as const;
/** A VM with no NoCloud seed: cloud-init's generator leaves cloud-init.target alone (kernel command line first). */
const NO_CLOUD_INIT_ARG = "cloud-init=disabled";
/** The NoCloud seed disk's virtio serial (cloud-init finds it by its ISO label, cidata). */
export const CIDATA_SERIAL = "cidata";

/**
 * Files baked into the VM image only (containers never see them): the config-disk unit,
 * networkd, a small initramfs with what the root disk needs, the root in fstab.
 */
export const VM_IMAGE_FILES: ReadonlyArray<{ path: string; content: string; mode: number }> = [
  {
    path: CONFIG_SCRIPT,
    mode: 0o755,
    content: `#!/bin/sh
# fmc lab: applies this VM's identity from its config disk (the virtio disk whose serial
# is ${CONFIG_SERIAL}): hostname, systemd-networkd files, SSH host keys, authorized_keys.
# Applied once per config (its id is stamped), so a reboot keeps what phases changed.
set -eu
dev=""
for b in /sys/block/vd*; do
  if [ "$(cat "$b/serial" 2>/dev/null)" = "${CONFIG_SERIAL}" ]; then dev="/dev/\${b##*/}"; fi
done
if [ -z "$dev" ]; then echo "fmc-lab-vm-config: no config disk (virtio serial ${CONFIG_SERIAL})" >&2; exit 1; fi
mnt=/run/fmc-lab-config
mkdir -p "$mnt"
mount -t ext4 -o ro,noload "$dev" "$mnt"
trap 'umount "$mnt"' EXIT
id=$(cat "$mnt/id")
if [ "$(cat ${CONFIG_STAMP} 2>/dev/null || true)" != "$id" ]; then
  cp -a "$mnt/root/." /
  tr -d '\\n' < /etc/hostname > /proc/sys/kernel/hostname
  mkdir -p ${dirname(CONFIG_STAMP)}
  echo "$id" > ${CONFIG_STAMP}
  echo "fmc-lab-vm-config: applied config $id"
fi
`,
  },
  {
    path: `/etc/systemd/system/${CONFIG_UNIT}`,
    mode: 0o644,
    content: `# fmc lab: this VM's identity from its config disk, before udev names its links and
# before networkd and sshd start
[Unit]
Description=fmc lab VM identity from the config disk
DefaultDependencies=no
After=systemd-remount-fs.service
Before=systemd-udev-trigger.service systemd-udevd.service systemd-networkd.service ssh.service sysinit.target
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${CONFIG_SCRIPT}

[Install]
WantedBy=sysinit.target
`,
  },
  {
    path: IGNITION_SCRIPT,
    mode: 0o755,
    content: `#!/bin/sh
# fmc lab stand-in for Flatcar's initramfs: on a first boot (kernel parameter
# ignition.firstboot), the real Ignition runs its stages on this VM's root, its config read
# from QEMU's fw_cfg as libvirt hands it over (-platform qemu). On Flatcar these stages run
# in the initramfs before the root's systemd starts; here they run before sysinit.target,
# and what Ignition enabled (its preset file) is enabled and started afterwards, as the
# root's first boot would. Ignition's result file marks it done: a reboot skips it.
set -eu
case " $(cat /proc/cmdline) " in *" ignition.firstboot "*) ;; *) exit 0 ;; esac
if [ -e /etc/.ignition-result.json ]; then echo "fmc-lab-ignition: provisioned already"; exit 0; fi
modprobe qemu_fw_cfg
# not under /run: the initramfs mounts it noexec, and setfiles below must run
scratch=/var/lib/fmc-lab/ignition-run
rm -rf "$scratch"
mkdir -p -m 0700 "$scratch"
mkdir "$scratch/bin"
# Ignition relabels what it wrote for SELinux (Flatcar has a policy); this Debian root has
# none: for the run, SELinux's "disabled" config and a setfiles that records the paths
printf '#!/bin/sh\\ntr "\\\\0" "\\\\n" >> %s/relabel.txt\\n' "$scratch" > "$scratch/bin/setfiles"
chmod 755 "$scratch/bin/setfiles"
selinux=""
if [ ! -e /etc/selinux/config ]; then
  selinux=yes
  mkdir -p /etc/selinux
  printf 'SELINUX=disabled\\nSELINUXTYPE=targeted\\n' > /etc/selinux/config
fi
for stage in fetch disks mount files umount; do
  echo "fmc-lab-ignition: stage $stage"
  PATH="$scratch/bin:/usr/sbin:/usr/bin:/sbin:/bin" ${IGNITION_IN_IMAGE} -platform qemu -stage "$stage" -root / \\
    -config-cache "$scratch/config.json" -state-file "$scratch/state" -neednet "$scratch/neednet" -log-to-stdout
done
if [ -n "$selinux" ]; then rm -rf /etc/selinux; fi
echo "fmc-lab-ignition: $(cat "$scratch/relabel.txt" 2>/dev/null | wc -l) paths recorded for SELinux relabelling"
rm -rf "$scratch" # its config cache holds the config's secrets
tr -d '\\n' < /etc/hostname > /proc/sys/kernel/hostname
preset=/etc/systemd/system-preset/20-ignition.preset
systemctl daemon-reload
if [ -s "$preset" ]; then
  units=$(awk '$1 == "enable" || $1 == "disable" { print $2 }' "$preset")
  # shellcheck disable=SC2086 # unit names, one word each
  systemctl preset $units
fi
# the boot's transaction was computed before Ignition ran: what it enabled joins it now
systemctl start --no-block default.target
echo "fmc-lab-ignition: done"
`,
  },
  {
    path: `/etc/systemd/system/${IGNITION_UNIT}`,
    mode: 0o644,
    content: `# fmc lab: the real Ignition on a Flatcar VM's first boot (see ${IGNITION_SCRIPT}), with
# udev running (its disks stage), before networkd and sshd read what it writes
[Unit]
Description=fmc lab: Ignition on first boot (stand-in for Flatcar's initramfs)
DefaultDependencies=no
After=${CONFIG_UNIT} systemd-udevd.service systemd-udev-trigger.service systemd-remount-fs.service
Wants=systemd-udevd.service systemd-udev-trigger.service
Before=systemd-networkd.service ssh.service sysinit.target local-fs.target
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${IGNITION_SCRIPT}
StandardOutput=journal+console

[Install]
WantedBy=sysinit.target
`,
  },
  { path: "/etc/fstab", mode: 0o644, content: "# fmc lab VM: the root is the first virtio disk\n/dev/vda / ext4 rw,errors=remount-ro 0 0\n" },
  // only what the root disk needs: a small initramfs decompresses fast under emulation
  { path: "/etc/initramfs-tools/conf.d/fmc-lab", mode: 0o644, content: "# fmc lab VM: only the modules listed in ../modules\nMODULES=list\n" },
  { path: "/etc/initramfs-tools/modules", mode: 0o644, content: "# fmc lab VM: the virtio root disk\nvirtio_pci\nvirtio_blk\next4\n" },
  // QEMU boots the image's initrd from outside (-initrd): a package's initramfs trigger
  // (lvm2, open-iscsi, …) would spend most of a minute under emulation for nothing
  { path: "/etc/initramfs-tools/update-initramfs.conf", mode: 0o644, content: "# fmc lab VM: QEMU boots the initrd built with the image (-initrd); packages' triggers don't rebuild it\nupdate_initramfs=no\nbackup_initramfs=no\n" },
  { path: "/etc/hostname", mode: 0o644, content: "localhost\n" },
  // the locale cloud-init sets (en_US.UTF-8, generated in the root filesystem) is the
  // system's already: cloud-init's locale module skips a locale-gen of ≈ 20 s under emulation
  { path: "/etc/default/locale", mode: 0o644, content: "# fmc lab VM: generated in the lab's root filesystem\nLANG=en_US.UTF-8\n" },
];

export interface VmImage {
  readonly kernel: string;
  readonly initrd: string;
  /** The raw ext4 root image every VM's copy-on-write disk is backed by. */
  readonly image: string;
}

/** The image's cache key: the root filesystem it is made of, and everything added to it. */
export function vmImageKey(rootfs: string, files: typeof VM_IMAGE_FILES = VM_IMAGE_FILES, packages: readonly string[] = VM_PACKAGES): string {
  const h = createHash("sha256").update(`${basename(rootfs)} ${packages.join(",")} ${IMAGE_SIZE} ${VM_BUILD}\n${NO_DEFAULT_CLUSTER.content}\n${VM_MASKED_GENERATORS.join(",")}\n`);
  for (const f of files) h.update(`${f.path} ${f.mode.toString(8)}\n${f.content}\n`);
  return h.digest("hex").slice(0, 12);
}

function vmImagePath(rootfs = rootfsPath()): string {
  return join(LAB_ROOT, `vm-${vmImageKey(rootfs)}`);
}

const imageOf = (dir: string): VmImage => ({ kernel: join(dir, "vmlinuz"), initrd: join(dir, "initrd.img"), image: join(dir, "root.img") });

function run(cmd: string, args: string[], what: string, code = "LAB_VM"): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (r.status !== 0) throw new FmcError(code, `${what}: ${cmd} ${args.join(" ")}: ${(r.stderr || r.stdout || String(r.error ?? "")).trim().split("\n").slice(-3).join(" / ")}`);
  return r.stdout;
}

function requireTools(): void {
  for (const [tool, pkg] of [[QEMU, "qemu-system-x86"], ["qemu-img", "qemu-utils"], ["mkfs.ext4", "e2fsprogs"], ["ssh-keygen", "openssh-client"]] as const) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) throw new FmcError("LAB_TOOL", `${tool} is not installed (lab VMs need it)`, `apt-get install -y --no-install-recommends ${pkg}; or fmc lab up --vm none runs every host as a container`);
  }
}

/**
 * The VM image: kernel, initrd and a sparse ext4 root image. Built once per root
 * filesystem (about a minute) in a temp directory renamed when done.
 */
export async function ensureVmImage(log: (line: string) => void): Promise<VmImage> {
  requireTools();
  const rootfs = await prepareRootfs(log);
  const dir = vmImagePath(rootfs);
  if (existsSync(join(dir, ".fmc-ready"))) return imageOf(dir);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const started = Date.now();
  log(`building the lab VM image (the lab root filesystem plus ${VM_PACKAGES.join(", ")}; once, one or two minutes)`);
  try {
    mkdirSync(tmp, { recursive: true, mode: 0o700 });
    const root = join(tmp, "root");
    run("cp", ["-a", "--reflink=auto", rootfs, root], "copying the lab root filesystem");
    // the kernel comes from the mirror at build time; the VM's only apt source stays the
    // lab's offline repository
    const source = join(root, "etc/apt/sources.list.d/fmc-vm-build.list");
    writeFileSync(source, `deb ${debianMirror()} bookworm main\n`);
    inRoot(root, "apt-get update", ["apt-get", "update", "-q"]);
    mkdirSync(join(root, dirname(NO_DEFAULT_CLUSTER.path)), { recursive: true });
    writeFileSync(join(root, NO_DEFAULT_CLUSTER.path), NO_DEFAULT_CLUSTER.content, { mode: 0o644 });
    // no package starts a daemon on this machine while it is installed in the chroot
    const policy = join(root, "usr/sbin/policy-rc.d");
    writeFileSync(policy, "#!/bin/sh\nexit 101\n", { mode: 0o755 });
    // INITRD=No: the kernel's hook makes no initramfs yet (ours follows, with the image's settings)
    inRoot(root, `installing ${VM_PACKAGES.join(", ")}`, ["env", "INITRD=No", "apt-get", "install", "-y", "-q", "--no-install-recommends", ...VM_PACKAGES]);
    rmSync(source);
    rmSync(policy);
    for (const f of readdirSync(join(root, "var/lib/apt/lists")).filter((x) => x !== "lock" && x !== "partial" && x !== "auxfiles")) rmSync(join(root, "var/lib/apt/lists", f), { recursive: true, force: true });
    inRoot(root, "apt-get update from the local repository", ["apt-get", "update", "-q"]);
    inRoot(root, "apt-get clean", ["apt-get", "clean"]);
    // after the install, so no package's configuration file prompt meets them
    for (const f of VM_IMAGE_FILES) {
      mkdirSync(join(root, dirname(f.path)), { recursive: true });
      writeFileSync(join(root, f.path), f.content, { mode: f.mode });
      chmodSync(join(root, f.path), f.mode);
    }
    inRoot(root, "enabling the config unit, the first-boot Ignition unit and systemd-networkd", ["systemctl", "enable", CONFIG_UNIT, IGNITION_UNIT, "systemd-networkd.service"]);
    mkdirSync(join(root, "etc/systemd/system-generators"), { recursive: true });
    for (const g of VM_MASKED_GENERATORS) symlinkSync("/dev/null", join(root, "etc/systemd/system-generators", g));
    const kernel = readdirSync(join(root, "boot")).find((f) => /^vmlinuz-/.test(f));
    if (!kernel) throw new FmcError("LAB_VM", "the VM image has no kernel in /boot");
    const version = kernel.slice("vmlinuz-".length);
    const initrd = `initrd.img-${version}`;
    inRoot(root, "making the VM's initramfs", ["mkinitramfs", "-o", `/boot/${initrd}`, version]);
    run("cp", [join(root, "boot", kernel), join(tmp, "vmlinuz")], "copying the kernel");
    run("cp", [join(root, "boot", initrd), join(tmp, "initrd.img")], "copying the initrd");
    const image = join(tmp, "root.img");
    run("mkfs.ext4", ["-q", "-F", "-L", "fmc-root", "-m", "0", "-E", "root_owner=0:0", "-d", root, image, IMAGE_SIZE], "making the VM root image");
    rmSync(root, { recursive: true, force: true });
    writeFileSync(join(tmp, ".fmc-ready"), `${basename(rootfs)} + ${VM_PACKAGES.join(" ")}; kernel ${kernel}\n`);
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  log(`built the lab VM image in ${((Date.now() - started) / 1000).toFixed(0)} s: ${dir}`);
  removeOldImages(dir, log);
  return imageOf(dir);
}

/** Earlier images (other cache keys) that no process has open (a running VM's base). */
function removeOldImages(current: string, log: (line: string) => void): void {
  const old = readdirSync(LAB_ROOT).filter((d) => /^vm-[0-9a-f]{12}$/.test(d)).map((d) => join(LAB_ROOT, d)).filter((d) => d !== current);
  if (!old.length) return;
  const open = new Set<string>();
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        try {
          open.add(dirname(readlinkSync(`/proc/${pid}/fd/${fd}`)));
        } catch {
          /* closed meanwhile */
        }
      }
    } catch {
      /* gone or not ours */
    }
  }
  for (const d of old.filter((x) => !open.has(x))) {
    rmSync(d, { recursive: true, force: true });
    log(`removed the outdated VM image ${d}`);
  }
}

// ---------------------------------------------------------------------------------------
// Acceleration

export type Accel = "kvm" | "tcg";

/**
 * KVM when a guest really runs under it (here /dev/kvm exists but guests hang): a tiny
 * probe boots the kernel with no root under KVM and must reach its panic within a few
 * seconds. The answer is kept per machine boot; FMC_LAB_ACCEL=kvm|tcg overrides.
 */
function detectAccel(kernel: string, log: (line: string) => void): Accel {
  const forced = process.env.FMC_LAB_ACCEL;
  if (forced === "kvm" || forced === "tcg") return forced;
  if (!existsSync("/dev/kvm")) return "tcg";
  const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  const cache = join(LAB_ROOT, "vm-accel");
  const cached = existsSync(cache) ? readFileSync(cache, "utf8").trim().split(" ") : [];
  if (cached[0] === bootId && (cached[1] === "kvm" || cached[1] === "tcg")) return cached[1];
  const started = Date.now();
  const r = spawnSync(QEMU, ["-accel", "kvm", "-nodefaults", "-no-user-config", "-display", "none", "-m", "256", "-no-reboot", "-serial", "stdio", "-kernel", kernel, "-append", "console=ttyS0 panic=-1 loglevel=1"], { encoding: "utf8", timeout: 8000, killSignal: "SIGKILL" });
  const accel: Accel = /Kernel panic/.test(r.stdout ?? "") ? "kvm" : "tcg";
  log(`KVM probe: ${accel === "kvm" ? "a guest runs under KVM" : "no guest runs under KVM here (it hangs or fails)"}, ${((Date.now() - started) / 1000).toFixed(1)} s; VMs use ${accel === "kvm" ? "KVM" : "software emulation (TCG)"}`);
  mkdirSync(LAB_ROOT, { recursive: true, mode: 0o700 });
  writeFileSync(cache, `${bootId} ${accel}\n`);
  return accel;
}

// ---------------------------------------------------------------------------------------
// Per-VM configuration and QEMU's command line (pure)

export interface VmNic {
  /** The bridge (segment) in the switch namespace. */
  readonly bridge: string;
  readonly mac: string;
  /** address/prefix */
  readonly address: string;
  /** The interface name inside the guest. */
  readonly ifname: string;
}

export interface VmDataDisk {
  /** Also the disk's virtio serial (/dev/disk/by-id/virtio-NAME). */
  readonly name: string;
  readonly sizeGiB: number;
}

/** A file the config disk puts into the guest (absolute path) at first boot. */
export interface VmFile {
  readonly path: string;
  readonly content: string;
  readonly mode: number;
}

export interface VmConfig {
  readonly hostname: string;
  readonly nics: readonly VmNic[];
  readonly defaultVia?: string;
  readonly authorizedKeys: readonly string[];
  /** SSH host keys: file name in /etc/ssh (ssh_host_ed25519_key, ….pub) → content. */
  readonly hostKeys: Readonly<Record<string, string>>;
  /** More files, e.g. /etc/hosts. */
  readonly files?: readonly VmFile[];
  /**
   * What names and addresses the VM at its first boot: the lab's config disk (default), or
   * the host's own first-boot files (Ignition writes hostname and networkd files; cloud-init
   * also makes its own SSH host keys), which the config disk then leaves alone.
   */
  readonly firstBoot?: "ignition" | "cloud-init";
}

/** Stable MAC from the address, the same as the lab's containers get: a recreated host keeps its MAC. */
export function macOfAddress(address: string): string {
  if (parseIp(address) === undefined) throw new FmcError("LAB_VM", `not an IPv4 address: ${JSON.stringify(address)}`);
  return `02:fc:${address.split(".").map((o) => Number(o).toString(16).padStart(2, "0")).join(":")}`;
}

const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IFNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const DISK_NAME = /^[a-z0-9][a-z0-9_-]{0,19}$/;
/** QEMU ids, -name values, tap and bridge names. */
const QEMU_WORD = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function check(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw new FmcError("LAB_VM", `invalid ${what}: ${JSON.stringify(value)}`);
}

function checkNic(n: VmNic): void {
  check(IFNAME.test(n.ifname), "interface name", n.ifname);
  check(IFNAME.test(n.bridge), "bridge name", n.bridge);
  check(MAC.test(n.mac) && (parseInt(n.mac.slice(0, 2), 16) & 1) === 0, "unicast MAC address", n.mac);
  const net = networkOf(n.address);
  check(net !== undefined && net.prefix > 0 && net.prefix < 32, "address/prefix", n.address);
}

function checkPath(p: string, what: string): void {
  check(isAbsolute(p) && normalize(p) === p && !p.endsWith("/") && controlChar(p) === undefined, what, p);
}

/** The systemd-networkd link name and address of each NIC, matched by MAC. */
export function networkdFiles(nics: readonly VmNic[], defaultVia?: string): VmFile[] {
  nics.forEach(checkNic);
  check(new Set(nics.map((n) => n.mac)).size === nics.length && new Set(nics.map((n) => n.ifname)).size === nics.length, "NICs (MACs and names must be unique)", nics.map((n) => `${n.ifname} ${n.mac}`));
  let gatewayNic: VmNic | undefined;
  if (defaultVia !== undefined) {
    const via = parseIp(defaultVia);
    check(via !== undefined, "default route", defaultVia);
    gatewayNic = nics.find((n) => contains(networkOf(n.address)!, via!));
    check(gatewayNic !== undefined, "default route (on no NIC's subnet)", defaultVia);
  }
  return nics.flatMap((n) => [
    {
      path: `/etc/systemd/network/10-fmc-${n.ifname}.link`,
      mode: 0o644,
      content: `# fmc lab: ${n.ifname}, named by its MAC\n[Match]\nMACAddress=${n.mac}\n\n[Link]\nName=${n.ifname}\n`,
    },
    {
      path: `/etc/systemd/network/10-fmc-${n.ifname}.network`,
      mode: 0o644,
      content: `# fmc lab: ${n.ifname}'s address on segment ${n.bridge}\n[Match]\nMACAddress=${n.mac}\n\n[Network]\nAddress=${n.address}\n${n === gatewayNic ? `Gateway=${defaultVia}\n` : ""}LinkLocalAddressing=no\nIPv6AcceptRA=no\n`,
    },
  ]);
}

/** Every file the config disk installs in the guest, with its mode (directories: see configDirMode). */
export function vmConfigFiles(c: VmConfig): VmFile[] {
  check(HOSTNAME.test(c.hostname), "hostname", c.hostname);
  for (const k of c.authorizedKeys) check(/^\S+ \S+( [^\n]*)?$/.test(k.trim()) && controlChar(k) === undefined, "authorized key", k);
  const keyNames = Object.keys(c.hostKeys);
  for (const k of keyNames) check(/^ssh_host_[a-z0-9]+_key(\.pub)?$/.test(k), "SSH host key file name", k);
  check(keyNames.includes("ssh_host_ed25519_key") && keyNames.includes("ssh_host_ed25519_key.pub"), "SSH host keys (an ed25519 pair is needed)", keyNames);
  const files: VmFile[] = [
    ...(c.firstBoot ? [] : [{ path: "/etc/hostname", mode: 0o644, content: `${c.hostname}\n` }, ...networkdFiles(c.nics, c.defaultVia)]),
    ...(c.firstBoot === "cloud-init" ? [] : keyNames.sort().map((k) => ({ path: `/etc/ssh/${k}`, mode: k.endsWith(".pub") ? 0o644 : 0o600, content: c.hostKeys[k]!.trimEnd() + "\n" }))),
    { path: "/root/.ssh/authorized_keys", mode: 0o600, content: c.authorizedKeys.map((k) => k.trim()).join("\n") + "\n" },
  ];
  for (const f of c.files ?? []) {
    checkPath(f.path, "file path");
    files.push(f);
  }
  const paths = files.map((f) => f.path);
  check(new Set(paths).size === paths.length, "config files (a path appears twice)", paths);
  return files;
}

/** Directories on the config disk are copied onto the guest's own: their modes must be the guest's. */
function configDirMode(dir: string): number {
  return dir === "/root" || dir.startsWith("/root/") ? 0o700 : 0o755;
}

/** Writes the config disk's tree (root/…, id) into `stage`; returns the config's id. */
export function stageVmConfig(stage: string, files: readonly VmFile[]): string {
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(join(stage, "root"), { recursive: true, mode: 0o755 });
  chmodSync(join(stage, "root"), 0o755);
  const id = createHash("sha256");
  for (const f of files) {
    let d = dirname(f.path);
    const dirs: string[] = [];
    while (d !== "/") {
      dirs.unshift(d);
      d = dirname(d);
    }
    for (const x of dirs) {
      if (!existsSync(join(stage, "root", x))) mkdirSync(join(stage, "root", x));
      chmodSync(join(stage, "root", x), configDirMode(x));
    }
    writeFileSync(join(stage, "root", f.path), f.content, { mode: f.mode });
    chmodSync(join(stage, "root", f.path), f.mode);
    id.update(`${f.path} ${f.mode.toString(8)}\n${f.content}\n`);
  }
  const digest = id.digest("hex").slice(0, 16);
  writeFileSync(join(stage, "id"), `${digest}\n`, { mode: 0o644 });
  return digest;
}

/** The config disk: a small ext4 image of the staged tree (mkfs.ext4 -d; no mount, no nbd). */
export function makeConfigDisk(stage: string, image: string): void {
  rmSync(image, { force: true });
  closeSync(openSync(image, "wx", 0o600)); // it holds private host keys
  run("mkfs.ext4", ["-q", "-F", "-L", CONFIG_SERIAL, "-m", "0", "-E", "root_owner=0:0", "-d", stage, image, "8M"], "making the VM config disk");
}

export interface QemuSpec {
  /** -name and the process name: how `lab down` finds stray VMs. */
  readonly label: string;
  readonly accel: Accel;
  readonly memoryMiB: number;
  readonly vcpus: number;
  readonly kernel: string;
  readonly initrd: string;
  /** Kernel parameters beyond root and console. */
  readonly append?: readonly string[];
  /** QEMU's -cpu model (default: QEMU's own). */
  readonly cpu?: string;
  readonly rootDisk: string;
  readonly dataDisks: ReadonlyArray<{ name: string; path: string }>;
  readonly configDisk: string;
  /** A NoCloud seed ISO, attached read-only after the config disk. */
  readonly cidata?: string;
  /** QEMU fw_cfg entries (an Ignition config under its names). */
  readonly fwCfg?: ReadonlyArray<{ name: string; file: string }>;
  readonly nics: ReadonlyArray<{ tap: string; mac: string }>;
  readonly console: string;
  /** The QMP socket (system_powerdown, system_reset, quit). */
  readonly qmp: string;
}

/** A path inside a QEMU option value: commas are doubled, as QEMU's option syntax wants. */
const qemuPath = (p: string, what: string) => {
  checkPath(p, what);
  return p.replace(/,/g, ",,");
};

const plainPath = (p: string, what: string) => {
  checkPath(p, what);
  check(!p.includes(","), `${what} (QEMU takes it verbatim: no commas)`, p);
  return p;
};

/** QEMU's argv (no shell): root disk vda, data disks vdb…, config disk last, one virtio NIC per tap in order. */
export function qemuArgs(q: QemuSpec): string[] {
  check(QEMU_WORD.test(q.label) && q.label.length <= 64, "VM label", q.label);
  check(Number.isInteger(q.memoryMiB) && q.memoryMiB >= 128 && q.memoryMiB <= 65536, "memory (MiB)", q.memoryMiB);
  check(Number.isInteger(q.vcpus) && q.vcpus >= 1 && q.vcpus <= 64, "vCPU count", q.vcpus);
  check(q.accel === "kvm" || q.accel === "tcg", "accelerator", q.accel);
  if (q.cpu !== undefined) check(QEMU_WORD.test(q.cpu), "CPU model", q.cpu);
  for (const a of q.append ?? []) check(/^[A-Za-z0-9_.:=/,-]+$/.test(a), "kernel parameter", a);
  const args = [
    "-name", `${q.label},process=${q.label}`,
    "-nodefaults", "-no-user-config",
    "-machine", "pc", "-accel", q.accel,
    ...(q.cpu ? ["-cpu", q.cpu] : []),
    "-smp", String(q.vcpus), "-m", String(q.memoryMiB),
    "-display", "none", "-vga", "none",
    // -kernel/-initrd are taken verbatim (no ",," escape): such paths may hold no comma
    "-kernel", plainPath(q.kernel, "kernel path"), "-initrd", plainPath(q.initrd, "initrd path"),
    "-append", ["root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", ...(q.accel === "tcg" ? TCG_KERNEL_ARGS : []), ...(q.append ?? [])].join(" "),
    // chardevs, not -serial file:/-qmp unix: (those shorthands take no ",," escape)
    "-chardev", `file,id=console,path=${qemuPath(q.console, "console log path")}`, "-serial", "chardev:console",
    "-chardev", `socket,id=qmp,path=${qemuPath(q.qmp, "QMP socket path")},server=on,wait=off`, "-mon", "chardev=qmp,mode=control",
    "-drive", `file=${qemuPath(q.rootDisk, "root disk path")},if=none,id=root,format=qcow2,discard=unmap`,
    "-device", "virtio-blk-pci,drive=root,serial=root",
  ];
  const names = new Set<string>();
  q.dataDisks.forEach((d, i) => {
    check(DISK_NAME.test(d.name) && d.name !== "root" && d.name !== CONFIG_SERIAL && !names.has(d.name), "data disk name", d.name);
    names.add(d.name);
    args.push("-drive", `file=${qemuPath(d.path, "data disk path")},if=none,id=data${i},format=raw,discard=unmap`, "-device", `virtio-blk-pci,drive=data${i},serial=${d.name}`);
  });
  args.push("-drive", `file=${qemuPath(q.configDisk, "config disk path")},if=none,id=config,format=raw,readonly=on`, "-device", `virtio-blk-pci,drive=config,serial=${CONFIG_SERIAL}`);
  if (q.cidata !== undefined) args.push("-drive", `file=${qemuPath(q.cidata, "NoCloud seed path")},if=none,id=cidata,format=raw,readonly=on`, "-device", `virtio-blk-pci,drive=cidata,serial=${CIDATA_SERIAL}`);
  for (const f of q.fwCfg ?? []) {
    check(/^opt\/[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)+$/.test(f.name) && f.name.length <= 55, "fw_cfg name", f.name);
    args.push("-fw_cfg", `name=${f.name},file=${qemuPath(f.file, "fw_cfg file path")}`);
  }
  const taps = new Set<string>();
  q.nics.forEach((n, i) => {
    check(QEMU_WORD.test(n.tap) && n.tap.length <= 15 && !taps.has(n.tap), "tap name", n.tap);
    taps.add(n.tap);
    check(MAC.test(n.mac), "MAC address", n.mac);
    args.push("-netdev", `tap,id=net${i},ifname=${n.tap},script=no,downscript=no`, "-device", `virtio-net-pci,netdev=net${i},mac=${n.mac}`);
  });
  args.push("-device", "virtio-rng-pci");
  return args;
}

/**
 * Kernel parameters for a guest under software emulation. Its clock watchdog finds the
 * emulated TSC unsteady and falls back to the HPET, whose every read is an emulated device
 * access: each gettimeofday then costs a trip through QEMU. The emulated TSC follows the
 * host's monotonic clock, so the guest may trust it. Speculation mitigations protect
 * nothing in a throwaway emulated guest and cost an emulated retpoline on every indirect call.
 */
export const TCG_KERNEL_ARGS = ["clocksource=tsc", "tsc=reliable", "mitigations=off"] as const;

/** A tap's name in the switch namespace: short (15 bytes), stable per VM label and NIC. */
export function tapName(label: string, index: number): string {
  return `vt${createHash("sha256").update(label).digest("hex").slice(0, 8)}${index}`;
}

// ---------------------------------------------------------------------------------------
// Running VMs

export interface StartVmOptions {
  /** The lab host's name; the VM's label is `fmclab-NAME` unless `label` says otherwise. */
  readonly name: string;
  /** Per-VM state: disks, config disk, console log, host keys. An existing disk is booted again as it is. */
  readonly dir: string;
  readonly nics: readonly VmNic[];
  readonly defaultVia?: string;
  readonly dataDisks: readonly VmDataDisk[];
  readonly authorizedKeys: readonly string[];
  /** SSH host keys (file name in /etc/ssh → content); generated once in DIR/hostkeys when absent. */
  readonly hostKeys?: Readonly<Record<string, string>>;
  readonly hostname: string;
  readonly memoryMiB?: number;
  readonly vcpus?: number;
  readonly files?: readonly VmFile[];
  /** The namespace holding the segments' bridges (default fmclab-switch). */
  readonly switchNs?: string;
  readonly label?: string;
  readonly image?: VmImage;
  /** More kernel parameters (e.g. systemd.log_level=debug while debugging). */
  readonly append?: readonly string[];
  readonly cpu?: string;
  /**
   * The host's own first-boot files, handed over as terraform-provider-libvirt does: an
   * Ignition config through fw_cfg (a Flatcar host), or a NoCloud seed ISO as a read-only
   * disk (a cloud-init host). Without them the config disk names and addresses the VM.
   */
  readonly firstBoot?: { readonly ignition: string } | { readonly cloudInitIso: string };
  readonly log: (line: string) => void;
}

export interface StartedVm {
  readonly pid: number;
  readonly accel: Accel;
  /**
   * The host's ed25519 public key, "ssh-ed25519 AAAA…", for known_hosts; none when cloud-init
   * makes the host's keys at its first boot (consoleHostKey reads them from its console).
   */
  readonly hostKey?: string;
  readonly console: string;
  readonly qmp: string;
}

/** What stopVm needs besides the pid, kept in DIR/vm.json. */
interface VmRecord {
  readonly label: string;
  readonly switchNs: string;
  readonly taps: string[];
}

function hostKeysIn(dir: string): Record<string, string> {
  const keys = join(dir, "hostkeys");
  const ssh = join(keys, "etc/ssh");
  if (!existsSync(join(ssh, "ssh_host_ed25519_key.pub"))) {
    rmSync(keys, { recursive: true, force: true });
    mkdirSync(ssh, { recursive: true, mode: 0o700 });
    chmodSync(keys, 0o700);
    run("ssh-keygen", ["-A", "-f", keys], "generating SSH host keys");
  }
  return Object.fromEntries(readdirSync(ssh).filter((f) => /^ssh_host_[a-z0-9]+_key(\.pub)?$/.test(f)).map((f) => [f, readFileSync(join(ssh, f), "utf8")]));
}


/**
 * A data disk as the libvirt volume would be: the sparse file DIR/disk-NAME.img of its size,
 * kept when it exists (a VM started again boots the same disks). A VM's and a container's.
 */
export function sparseDataDisk(dir: string, d: VmDataDisk): string {
  check(DISK_NAME.test(d.name), "data disk name", d.name);
  check(Number.isInteger(d.sizeGiB) && d.sizeGiB > 0 && d.sizeGiB <= 16384, "data disk size (GiB)", d.sizeGiB);
  const path = join(dir, `disk-${d.name}.img`);
  if (!existsSync(path)) {
    closeSync(openSync(path, "wx", 0o600));
    truncateSync(path, d.sizeGiB * 1024 ** 3); // sparse
  }
  return path;
}

/**
 * Boots a VM on the lab's segments. Its disks are kept in DIR: starting again with the
 * same DIR (after stopVm with keepDisks, or a power cut) boots the same disks.
 */
export async function startVm(o: StartVmOptions): Promise<StartedVm> {
  requireTools();
  const label = o.label ?? `fmclab-${o.name}`;
  const switchNs = o.switchNs ?? "fmclab-switch";
  check(QEMU_WORD.test(switchNs), "switch namespace", switchNs);
  checkPath(o.dir, "VM directory");
  const image = o.image ?? (await ensureVmImage(o.log));
  const accel = detectAccel(image.kernel, o.log);
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  chmodSync(o.dir, 0o700);
  const hostKeys = o.hostKeys ?? hostKeysIn(o.dir);
  const firstBoot = o.firstBoot && ("ignition" in o.firstBoot ? "ignition" : "cloud-init");
  const files = vmConfigFiles({ hostname: o.hostname, nics: o.nics, defaultVia: o.defaultVia, authorizedKeys: o.authorizedKeys, hostKeys, files: o.files, firstBoot });
  let ignitionFile: string | undefined;
  if (o.firstBoot && "ignition" in o.firstBoot) {
    ignitionFile = join(o.dir, "config.ign");
    writeFileSync(ignitionFile, o.firstBoot.ignition, { mode: 0o600 });
    chmodSync(ignitionFile, 0o600); // it may hold tokens
  }
  const cidata = o.firstBoot && "cloudInitIso" in o.firstBoot ? o.firstBoot.cloudInitIso : undefined;
  const append = [...(ignitionFile ? IGNITION_KERNEL_ARGS : []), ...(cidata ? [] : [NO_CLOUD_INIT_ARG]), ...(o.append ?? [])];

  const rootDisk = join(o.dir, "root.qcow2");
  if (!existsSync(rootDisk)) {
    run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", image.image, "-F", "raw", rootDisk], `creating ${o.name}'s disk`);
    chmodSync(rootDisk, 0o600);
  }
  const dataDisks = o.dataDisks.map((d) => ({ name: d.name, path: sparseDataDisk(o.dir, d) }));
  const stage = join(o.dir, "config");
  stageVmConfig(stage, files);
  const configDisk = join(o.dir, "config.img");
  makeConfigDisk(stage, configDisk);
  rmSync(stage, { recursive: true, force: true }); // private host keys live on only in the disk and DIR/hostkeys

  // one tap per NIC, made in the switch namespace and plugged into its segment
  const taps = o.nics.map((_, i) => tapName(label, i));
  const record: VmRecord = { label, switchNs, taps };
  writeFileSync(join(o.dir, "vm.json"), JSON.stringify(record) + "\n", { mode: 0o600 });
  o.nics.forEach((n, i) => {
    const tap = taps[i]!;
    spawnSync("ip", ["-n", switchNs, "link", "del", tap]);
    run("ip", ["-n", switchNs, "tuntap", "add", "dev", tap, "mode", "tap"], `creating ${o.name}'s tap for ${n.ifname}`);
    run("ip", ["-n", switchNs, "link", "set", tap, "master", n.bridge, "up"], `plugging ${o.name}'s ${n.ifname} into ${n.bridge}`);
  });

  const consoleLog = join(o.dir, "console.log");
  closeSync(openSync(consoleLog, "a", 0o600));
  chmodSync(consoleLog, 0o600);
  const qmp = join(o.dir, "qmp.sock");
  const vcpus = o.vcpus ?? 1;
  const memoryMiB = o.memoryMiB ?? 1024;
  const args = qemuArgs({
    label, accel, memoryMiB, vcpus, cpu: o.cpu, append, kernel: image.kernel, initrd: image.initrd, rootDisk, dataDisks, configDisk,
    ...(cidata ? { cidata } : {}),
    ...(ignitionFile ? { fwCfg: IGNITION_FW_CFG_NAMES.map((name) => ({ name, file: ignitionFile })) } : {}),
    nics: o.nics.map((n, i) => ({ tap: taps[i]!, mac: n.mac })), console: consoleLog, qmp,
  });
  const err = openSync(join(o.dir, "qemu.log"), "w", 0o600);
  // `ip netns exec` execs QEMU in the switch namespace: the pid is QEMU's own
  const child = spawn("ip", ["netns", "exec", switchNs, QEMU, ...args], { detached: true, stdio: ["ignore", err, err] });
  closeSync(err);
  child.unref();
  const pid = child.pid;
  if (!pid) throw new FmcError("LAB_VM", `could not start ${o.name}'s VM`);
  // QEMU fails fast (a busy tap, a bad disk): wait until it is QEMU and still running
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !(isOurQemu(pid, o.dir) && existsSync(qmp))) {
    if (!alive(pid)) break;
    await sleep(50);
  }
  if (!alive(pid) || !isOurQemu(pid, o.dir)) {
    const why = existsSync(join(o.dir, "qemu.log")) ? readFileSync(join(o.dir, "qemu.log"), "utf8").trim().split("\n").slice(-3).join(" / ") : "";
    throw new FmcError("LAB_VM", `${o.name}'s VM exited at once${why ? `: ${why}` : ""}`, `see ${join(o.dir, "qemu.log")}`);
  }
  const boots = ignitionFile ? `; first boot: its Ignition config through fw_cfg (${IGNITION_FW_CFG_NAMES.join(", ")})` : cidata ? `; first boot: its NoCloud seed ${cidata}` : "";
  o.log(`${o.name}: VM ${label} (pid ${pid}, ${accel === "kvm" ? "KVM" : "software emulation (TCG)"}, ${vcpus} vCPU, ${memoryMiB} MiB${dataDisks.length ? `, data disks ${dataDisks.map((d, i) => `/dev/vd${String.fromCharCode(98 + i)}=${d.name}`).join(" ")}` : ""}${boots}); console ${consoleLog}`);
  const pub = hostKeys["ssh_host_ed25519_key.pub"]!.trim().split(/\s+/);
  return { pid, accel, ...(firstBoot === "cloud-init" ? {} : { hostKey: `${pub[0]} ${pub[1]}` }), console: consoleLog, qmp };
}

/** The pid is a QEMU booting a disk in this VM's directory (a recycled pid is never signalled). */
export function isOurQemu(pid: number, dir: string): boolean {
  const argv = cmdlineOf(pid);
  return basename(argv[0] ?? "") === QEMU && argv.some((a) => a.startsWith(`file=${join(dir, "root.qcow2").replace(/,/g, ",,")},`));
}

/** Running QEMU processes whose label starts with the prefix (`lab down` finds stray VMs with "fmclab-"). */
export function vmPids(labelPrefix: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    const argv = cmdlineOf(Number(p));
    if (basename(argv[0] ?? "") !== QEMU) continue;
    const i = argv.indexOf("-name");
    if (i >= 0 && argv[i + 1]?.startsWith(labelPrefix) && alive(Number(p))) out.push(Number(p));
  }
  return out;
}

/**
 * Stops a VM by its own pid (SIGTERM: QEMU closes its disks cleanly; SIGKILL after 5 s),
 * then removes its taps and, unless keepDisks, its directory. Idempotent.
 */
export async function stopVm(pid: number | undefined, dir: string, opts: { keepDisks?: boolean } = {}): Promise<void> {
  checkPath(dir, "VM directory");
  if (pid && alive(pid) && isOurQemu(pid, dir)) {
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + 5000;
    while (alive(pid) && Date.now() < deadline) await sleep(50);
    if (alive(pid)) {
      process.kill(pid, "SIGKILL");
      const hard = Date.now() + 5000;
      while (alive(pid) && Date.now() < hard) await sleep(20);
    }
  }
  const recordFile = join(dir, "vm.json");
  if (existsSync(recordFile)) {
    const r = JSON.parse(readFileSync(recordFile, "utf8")) as VmRecord;
    for (const tap of r.taps.filter((t) => QEMU_WORD.test(t))) spawnSync("ip", ["-n", r.switchNs, "link", "del", tap]);
  }
  if (!opts.keepDisks) rmSync(dir, { recursive: true, force: true });
  else rmSync(join(dir, "qmp.sock"), { force: true });
}

/**
 * The ed25519 host key cloud-init made at a VM's first boot, as its keys-to-console module
 * prints it on the serial console (the lab's own file, so no trust on first use over the
 * network): the last "BEGIN SSH HOST KEY KEYS" block of the console log.
 */
export async function consoleHostKey(consoleLog: string, timeoutMs: number, alivePid?: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const key = hostKeyFromConsole(existsSync(consoleLog) ? readFileSync(consoleLog, "latin1") : "");
    if (key) return key;
    if (alivePid !== undefined && !alive(alivePid)) throw new FmcError("LAB_BOOT", `the VM stopped before cloud-init printed its host keys`, `see ${consoleLog}`);
    if (Date.now() > deadline) throw new FmcError("LAB_BOOT", `cloud-init printed no SSH host keys on the console within ${Math.round(timeoutMs / 1000)} s`, `see ${consoleLog}`);
    await sleep(500);
  }
}

/** The ed25519 key of the last host-keys block in a console log (carriage returns and all). */
export function hostKeyFromConsole(text: string): string | undefined {
  const blocks = [...text.replace(/\r/g, "").matchAll(/-----BEGIN SSH HOST KEY KEYS-----\n([\s\S]*?)-----END SSH HOST KEY KEYS-----/g)];
  const last = blocks.at(-1)?.[1];
  const m = last?.match(/^(ssh-ed25519) ([A-Za-z0-9+/]+={0,3})(?: |$)/m);
  return m ? `${m[1]} ${m[2]}` : undefined;
}
