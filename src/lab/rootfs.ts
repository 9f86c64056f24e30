// The lab's shared root filesystem: Debian bookworm from debootstrap with systemd and
// sshd, built once and reused read-only by every lab host through an overlay. The
// daemons the phases manage are not installed: like a fresh Debian host, a lab host gets
// them from `apt-get install`, whose postinst starts them with the package's own config.
// Lab hosts have no route out, so their only apt source is a local repository inside
// the root filesystem, filled at build time with the .debs those installs need.
// Built in a temp directory and renamed, so an interrupted build is never mistaken for
// a finished one.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync, renameSync, writeFileSync, mkdirSync, unlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { FmcError } from "../errors.js";

export const LAB_ROOT = process.env.FMC_LAB_ROOT ?? "/var/lib/fmc-lab";
const SUITE = "bookworm";
/** Installed in every lab host. */
const PACKAGES = [
  "systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "procps", "sudo", "curl", "iputils-ping",
  "nftables", "systemd-timesyncd", "python3",
  // for the Ansible baseline of bench/apply-vs-ansible (its apt module)
  "python3-apt",
  // bench/failover's tunnel throughput
  "iperf3",
];
/**
 * Installed after debootstrap (its own dependency resolution leaves python3-cryptography
 * unconfigured): the real first-boot tool of the AlmaLinux and Debian hosts. A lab host
 * made from a cloud-init host of the spec boots with the NoCloud seed Terraform gives it.
 */
const FIRST_BOOT_PACKAGES = ["cloud-init", "locales"]; // locales: cloud-init sets one (en_US.UTF-8) as cloud images allow
/**
 * Offered but not installed: what the phases install with apt, served from the local
 * repository (with their dependencies, without recommends, as fmc installs them).
 */
const OFFERED_PACKAGES = [
  "haproxy", "keepalived", // loadbalancer, edge
  "wireguard-tools", "wireguard-go", // wireguard (lab hosts have no kernel module)
  "bind9", "bind9-dnsutils", // dns (bind9 engine; dig for checks)
  "nfs-kernel-server", "nfs-common", "lvm2", "xfsprogs", // storage (kernel NFS and LVM: lab VMs only)
  "postgresql", "postgresql-contrib", // database (contrib: pgbench)
  "open-iscsi", "cryptsetup", "dmsetup", // longhorn-prereqs (as Longhorn's environment check lists them)
  "prometheus-node-exporter", // base: node_exporter on the hosts Prometheus scrapes by address
];
/** The local apt repository inside every lab host: its only apt source. */
export const LAB_APT_REPO = "/opt/fmc-lab/apt";
const BUILD = "v6";

/** The Debian mirror this machine's apt already uses (never a hard-coded host). */
export function debianMirror(): string {
  const candidates: string[] = [];
  const dirs = ["/etc/apt/sources.list.d"];
  const files = ["/etc/apt/sources.list", ...dirs.flatMap((d) => (existsSync(d) ? readdirSync(d).map((f) => join(d, f)) : []))];
  for (const f of files.filter((x) => existsSync(x))) {
    const text = readFileSync(f, "utf8");
    for (const block of text.split(/\n\s*\n/)) {
      const uri = block.match(/^URIs:\s*(\S+)/m)?.[1];
      const suites = block.match(/^Suites:\s*(.+)$/m)?.[1] ?? "";
      if (uri && suites.split(/\s+/).includes(SUITE) && /\/debian\/?$/.test(uri)) candidates.push(uri);
    }
    for (const m of text.matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian\/?)\s+bookworm\s/gm)) candidates.push(m[1]!);
  }
  const mirror = candidates[0];
  if (!mirror) throw new FmcError("LAB_MIRROR", "no Debian bookworm mirror in /etc/apt/sources.list*", "the lab builds its hosts' root filesystem with debootstrap from apt's mirror");
  return mirror;
}

export function rootfsPath(): string {
  const key = createHash("sha256").update(`${SUITE} ${PACKAGES.join(",")} first-boot:${FIRST_BOOT_PACKAGES.join(",")} offered:${OFFERED_PACKAGES.join(",")} ${BUILD}`).digest("hex").slice(0, 12);
  return join(LAB_ROOT, `rootfs-${key}`);
}

const lastLines = (r: { stdout: string; stderr: string }) => (r.stderr || r.stdout).trim().split("\n").slice(-3).join(" / ");

/** Runs a command inside the root filesystem being built; throws with its last lines. */
export function inRoot(root: string, what: string, args: string[]): string {
  const r = spawnSync("chroot", [root, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive" } });
  if (r.status !== 0) throw new FmcError("LAB_ROOTFS", `${what} failed: ${lastLines(r)}`, "the lab root filesystem needs this machine's Debian mirror once, at build time");
  return r.stdout;
}

/** A flat repository: the .debs and a Packages index, as dpkg-scanpackages writes it. */
function localRepository(root: string, progress: (line: string) => void): void {
  const repo = join(root, LAB_APT_REPO.slice(1));
  mkdirSync(repo, { recursive: true });
  // the dependency closure for these installs on exactly this root filesystem (what
  // debootstrap left in apt's cache is installed already and stays out)
  inRoot(root, "apt-get clean", ["apt-get", "clean"]);
  progress(`local apt repository: downloading the ${OFFERED_PACKAGES.length} offered packages and their dependencies`);
  inRoot(root, "downloading the offered packages", ["apt-get", "install", "--download-only", "-y", "-q", "--no-install-recommends", ...OFFERED_PACKAGES]);
  const archives = join(root, "var/cache/apt/archives");
  const debs = readdirSync(archives).filter((f) => f.endsWith(".deb")).sort();
  progress(`local apt repository: indexing ${debs.length} .debs`);
  const stanzas: string[] = [];
  for (const deb of debs) {
    renameSync(join(archives, deb), join(repo, deb));
    const control = inRoot(root, `reading ${deb}`, ["dpkg-deb", "--field", `${LAB_APT_REPO}/${deb}`]).trimEnd();
    const bytes = readFileSync(join(repo, deb));
    stanzas.push(`${control}\nFilename: ./${deb}\nSize: ${statSync(join(repo, deb)).size}\nSHA256: ${createHash("sha256").update(bytes).digest("hex")}\n`);
  }
  writeFileSync(join(repo, "Packages"), stanzas.join("\n"));
  // the local repository is the only source: lab hosts never reach a mirror
  writeFileSync(join(root, "etc/apt/sources.list"), "");
  writeFileSync(join(root, "etc/apt/sources.list.d/fmc-lab.list"), `# The lab's offline repository (fmc lab): ${OFFERED_PACKAGES.join(", ")} and their dependencies.\ndeb [trusted=yes] file:${LAB_APT_REPO} ./\n`);
  inRoot(root, "apt-get update from the local repository", ["apt-get", "update", "-q"]);
  inRoot(root, "apt-get clean", ["apt-get", "clean"]);
  // proves the repository is complete: the installs resolve with no other source
  progress("local apt repository: checking that the offered packages install from it alone");
  inRoot(root, "checking the local repository", ["apt-get", "install", "--simulate", "-q", "--no-install-recommends", ...OFFERED_PACKAGES]);
}

/**
 * debootstrap's stages, in the order it goes through them, recognised by its "I: …"
 * lines (debootstrap's functions file prints them with `info`): per-package lines are
 * counted, not echoed.
 */
const DEBOOTSTRAP_STAGES: ReadonlyArray<{ line: RegExp; say: string }> = [
  { line: /^I: Retrieving (In)?Release\b/, say: "fetching the release index" },
  { line: /^I: (Retrieving|Validating) Packages\b/, say: "fetching the package lists" },
  { line: /^I: (Resolving|Checking component|Found)\b/, say: "resolving dependencies" },
  { line: /^I: (Retrieving|Validating) \S+ \S+/, say: "downloading packages" },
  { line: /^I: Extracting\b/, say: "extracting" },
  { line: /^I: Installing (core|required|base)\b/, say: "installing" },
  { line: /^I: Unpacking\b/, say: "unpacking" },
  { line: /^I: Configuring\b/, say: "configuring" },
  { line: /^I: Base system installed\b/, say: "base system installed" },
];

/** Turns debootstrap's output lines into one progress line per stage it enters (stages only go forward). */
export function debootstrapProgress(say: (line: string) => void, now: () => number = Date.now): (line: string) => void {
  const started = now();
  let stage = -1;
  let packages = 0;
  return (line) => {
    const i = DEBOOTSTRAP_STAGES.findIndex((st) => st.line.test(line));
    if (i === 3 && /^I: Retrieving /.test(line)) packages++;
    if (i <= stage) return;
    const counted = stage === 3 && packages ? ` (${packages} packages downloaded)` : "";
    stage = i;
    say(`debootstrap: ${DEBOOTSTRAP_STAGES[i]!.say}${counted}, ${Math.round((now() - started) / 1000)} s in`);
  };
}

const debootstrapArgs = (tmp: string, mirror: string) => ["--variant=minbase", `--include=${PACKAGES.join(",")}`, SUITE, tmp, mirror];

/** Runs debootstrap into `tmp`, reporting its stages as they come; rejects with its last lines. */
function debootstrap(tmp: string, mirror: string, progress: (line: string) => void): Promise<void> {
  const stage = debootstrapProgress(progress);
  return new Promise((resolve, reject) => {
    const child = spawn("debootstrap", debootstrapArgs(tmp, mirror), { stdio: ["ignore", "pipe", "pipe"] });
    const tail: string[] = [];
    const keep = (l: string) => void (tail.push(l), tail.length > 3 && tail.shift());
    createInterface({ input: child.stdout }).on("line", (l) => {
      keep(l);
      stage(l);
    });
    createInterface({ input: child.stderr }).on("line", keep);
    child.once("error", (e) => reject(new FmcError("LAB_ROOTFS", `debootstrap failed: ${e.message}`)));
    child.once("close", (code) => (code === 0 ? resolve() : reject(new FmcError("LAB_ROOTFS", `debootstrap failed: ${tail.join(" / ")}`))));
  });
}

/**
 * The lab's root filesystem, built first if needed, with a progress line per stage
 * (debootstrap's as they happen): a minute or more, once per cache key.
 */
export async function prepareRootfs(log: (line: string) => void): Promise<string> {
  const dir = rootfsPath();
  if (existsSync(join(dir, ".fmc-ready"))) return dir;
  const tmp = startBuild(dir, log);
  const started = Date.now();
  const progress = (line: string) => log(`root filesystem: ${line}`);
  try {
    await debootstrap(tmp, debianMirror(), progress);
    finishBuild(tmp, dir, progress);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  log(`built the lab root filesystem in ${Math.round((Date.now() - started) / 1000)} s: ${dir}`);
  removeOldRootfs(dir, log);
  return dir;
}

/** Checks the tools and clears the temp directory a build goes into; says what is coming. */
function startBuild(dir: string, log: (line: string) => void): string {
  for (const tool of ["debootstrap", "systemd-nspawn"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) {
      throw new FmcError("LAB_TOOL", `${tool} is not installed`, "apt-get install -y debootstrap systemd-container");
    }
  }
  mkdirSync(LAB_ROOT, { recursive: true, mode: 0o700 });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  log(`building the lab root filesystem (debootstrap ${SUITE} and a local apt repository of ${OFFERED_PACKAGES.join(", ")}; once, about a minute)`);
  return tmp;
}

/** After debootstrap: the local repository, the host-specific files removed, the marker, the rename. */
function finishBuild(tmp: string, dir: string, progress: (line: string) => void): void {
  progress(`installing ${FIRST_BOOT_PACKAGES.join(", ")}`);
  inRoot(tmp, `installing ${FIRST_BOOT_PACKAGES.join(", ")}`, ["apt-get", "install", "-y", "-q", "--no-install-recommends", ...FIRST_BOOT_PACKAGES]);
  // as in Debian's cloud images: the locale cloud-init sets (en_US.UTF-8) is generated
  writeFileSync(join(tmp, "etc/locale.gen"), "en_US.UTF-8 UTF-8\n");
  inRoot(tmp, "generating en_US.UTF-8", ["locale-gen"]);
  localRepository(tmp, progress);
  // Every host gets its own SSH host keys at creation; none may be shared.
  for (const f of readdirSync(join(tmp, "etc/ssh")).filter((x) => x.startsWith("ssh_host_"))) unlinkSync(join(tmp, "etc/ssh", f));
  // As on a fresh Debian host, apt's postinst starts what it installs.
  rmSync(join(tmp, "usr/sbin/policy-rc.d"), { force: true });
  // A unique machine-id per boot; the console needs no login prompt.
  writeFileSync(join(tmp, "etc/machine-id"), "");
  rmSync(join(tmp, "etc/systemd/system/getty.target.wants"), { recursive: true, force: true });
  writeFileSync(join(tmp, ".fmc-ready"), `${SUITE} ${PACKAGES.join(" ")} ${FIRST_BOOT_PACKAGES.join(" ")}\noffered: ${OFFERED_PACKAGES.join(" ")}\n`);
  renameSync(tmp, dir);
}

/** Earlier builds (other cache keys) that no running lab host has as its lower layer. */
function removeOldRootfs(current: string, log: (line: string) => void): void {
  const mounts = readFileSync("/proc/mounts", "utf8");
  for (const name of readdirSync(LAB_ROOT).filter((d) => /^rootfs-[0-9a-f]{12}$/.test(d))) {
    const old = join(LAB_ROOT, name);
    if (old === current || mounts.includes(`lowerdir=${old},`)) continue;
    rmSync(old, { recursive: true, force: true });
    log(`removed the outdated root filesystem ${old}`);
  }
}
