// The lab's shared root filesystem: Debian bookworm from debootstrap with systemd,
// sshd and the daemons the phases manage, built once and reused read-only by every
// lab host through an overlay. Built in a temp directory and renamed, so an interrupted
// build is never mistaken for a finished one.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync, renameSync, writeFileSync, mkdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { FmcError } from "../errors.js";

export const LAB_ROOT = process.env.FMC_LAB_ROOT ?? "/var/lib/fmc-lab";
const SUITE = "bookworm";
const PACKAGES = [
  "systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "procps", "sudo", "curl", "iputils-ping",
  "haproxy", "keepalived", "nftables", "systemd-timesyncd", "python3",
  // for the Ansible baseline of bench/apply-vs-ansible (its apt module)
  "python3-apt",
];

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
  const key = createHash("sha256").update(`${SUITE} ${PACKAGES.join(",")} v2`).digest("hex").slice(0, 12);
  return join(LAB_ROOT, `rootfs-${key}`);
}

export function ensureRootfs(log: (line: string) => void): string {
  const dir = rootfsPath();
  if (existsSync(join(dir, ".fmc-ready"))) return dir;
  for (const tool of ["debootstrap", "systemd-nspawn"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) {
      throw new FmcError("LAB_TOOL", `${tool} is not installed`, "apt-get install -y debootstrap systemd-container");
    }
  }
  mkdirSync(LAB_ROOT, { recursive: true, mode: 0o700 });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  log(`building the lab root filesystem (debootstrap ${SUITE}, once; about a minute)`);
  const r = spawnSync("debootstrap", ["--variant=minbase", `--include=${PACKAGES.join(",")}`, SUITE, tmp, debianMirror()], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (r.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    throw new FmcError("LAB_ROOTFS", `debootstrap failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" / ")}`);
  }
  // Every host gets its own SSH host keys at creation; none may be shared.
  for (const f of readdirSync(join(tmp, "etc/ssh")).filter((x) => x.startsWith("ssh_host_"))) unlinkSync(join(tmp, "etc/ssh", f));
  // Daemons start only when the engine enables them, as on a fresh real host.
  for (const unit of ["haproxy.service", "keepalived.service"]) rmSync(join(tmp, "etc/systemd/system/multi-user.target.wants", unit), { force: true });
  // A unique machine-id per boot; the console needs no login prompt.
  writeFileSync(join(tmp, "etc/machine-id"), "");
  rmSync(join(tmp, "etc/systemd/system/getty.target.wants"), { recursive: true, force: true });
  writeFileSync(join(tmp, ".fmc-ready"), `${SUITE} ${PACKAGES.join(" ")}\n`);
  renameSync(tmp, dir);
  return dir;
}
