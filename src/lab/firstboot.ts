// The lab boots its hosts from the rendered first-boot files, with the real first-boot
// tools (Debian 12 packages both), instead of shaping them itself:
// - a Flatcar host's rendered Ignition config is run by the real Ignition (2.14) against
//   the host's root before its first boot: the fetch and files stages, with the config
//   handed over as a file (platform "file"; libvirt hands the same bytes over through QEMU's
//   fw_cfg). Ignition's disks stage needs block devices, so it runs only where the host
//   has a kernel and disks of its own.
// - a cloud-init host (AlmaLinux, Debian) gets the NoCloud ISO that terraform-provider-
//   libvirt's libvirt_cloudinit_disk builds (the same three files, the same mkisofs
//   arguments, volume id cidata); a container can't mount it, so its files are taken out
//   of that ISO into cloud-init's NoCloud seed directory, and the real cloud-init (22.4)
//   runs them when the host boots.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { spawnSync } from "node:child_process";
import { FmcError } from "../errors.js";
import type { Artifact } from "../render/types.js";

/** Where Debian's `ignition` package puts the binary (it belongs in an initramfs: not on PATH). */
export const IGNITION_BIN = "/usr/lib/dracut/modules.d/30ignition/ignition";
/** The NoCloud seed directory cloud-init's ds-identify and DataSourceNoCloud read. */
export const NOCLOUD_SEED = "/var/lib/cloud/seed/nocloud";
/** What Ignition leaves when it has provisioned a root (read by tests and `fmc lab status`). */
export const IGNITION_RESULT = "/etc/.ignition-result.json";

/** A host's first-boot files, as `fmc render` writes them. */
export interface FirstBoot {
  readonly ignition?: string;
  readonly cloudInit?: { readonly userData: string; readonly metaData: string; readonly networkConfig: string };
}

/** Picks each host's first-boot files out of the rendered artifacts (the paths `fmc render -o` writes). */
export function firstBootOf(artifacts: readonly Artifact[], host: string): FirstBoot {
  const at = (path: string) => artifacts.find((a) => a.path === path)?.content;
  const ignition = at(`ignition/${host}.ign`);
  const userData = at(`terraform/libvirt/cloudinit/${host}.user-data.yaml`);
  const networkConfig = at(`terraform/libvirt/cloudinit/${host}.network-config.yaml`);
  return {
    ...(ignition !== undefined ? { ignition } : {}),
    // the rendered libvirt_cloudinit_disk sets no meta_data: the provider writes it empty
    ...(userData !== undefined && networkConfig !== undefined ? { cloudInit: { userData, metaData: "", networkConfig } } : {}),
  };
}

/** The lines that say what went wrong (Ignition logs its whole config before them). */
const tail = (r: { stdout: string; stderr: string }, n = 4) => {
  const all = `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => l.trim() && !/failed to log systemd journal entry/.test(l));
  const bad = all.filter((l) => /^(CRITICAL|ERROR)\b|error|failed/i.test(l));
  return (bad.length ? bad : all).slice(-n).join(" / ");
};

export function requireFirstBootTools(needs: { ignition: boolean; cloudInit: boolean }): void {
  if (needs.ignition && !existsSync(IGNITION_BIN)) throw new FmcError("LAB_TOOL", `the real Ignition is not installed (${IGNITION_BIN})`, "apt-get install -y ignition");
  if (needs.cloudInit && spawnSync("sh", ["-c", "command -v xorriso"]).status !== 0) throw new FmcError("LAB_TOOL", "xorriso is not installed (it builds the NoCloud ISO as libvirt_cloudinit_disk does)", "apt-get install -y xorriso");
}

export interface IgnitionRun {
  /** Paths Ignition asked to relabel for SELinux (recorded: the lab's Debian root has no policy). */
  readonly relabelled: readonly string[];
}

/**
 * Runs the real Ignition's fetch and files stages on `root` with `config`. Ignition ends
 * its files stage by relabelling what it wrote for SELinux (Flatcar ships a policy); the
 * lab's Debian root has none, so for this run only the root gets SELinux's "disabled"
 * config and `setfiles` is a stand-in that records the paths, then both are gone again.
 */
export function runIgnition(config: string, root: string, scratchParent: string): IgnitionRun {
  const scratch = mkdtempSync(join(scratchParent, "ignition-"));
  const selinuxDir = join(root, "etc/selinux");
  const selinuxConfig = join(selinuxDir, "config");
  const hadSelinux = existsSync(selinuxConfig);
  const mounts: string[] = [];
  try {
    const configFile = join(scratch, "config.ign");
    writeFileSync(configFile, config, { mode: 0o600 });
    mkdirSync(join(scratch, "bin"));
    const relabelList = join(scratch, "relabel.txt");
    // setfiles -f - reads NUL-separated paths on stdin
    writeFileSync(join(scratch, "bin/setfiles"), `#!/bin/sh\n# fmc lab stand-in for SELinux's setfiles: records what Ignition relabels\ntr '\\0' '\\n' >> '${relabelList}'\n`, { mode: 0o755 });
    if (!hadSelinux) {
      mkdirSync(selinuxDir, { recursive: true });
      writeFileSync(selinuxConfig, "# fmc lab: SELinux is not part of the lab's Debian root\nSELINUX=disabled\nSELINUXTYPE=targeted\n");
    }
    // Ignition writes a user's authorized keys as that user, who can't get through the
    // lab's 0700 directories: in a mount namespace of its own, the root is bound at a
    // mount point under /run (0755) for the run, and nothing else changes
    const at = mkdtempSync("/run/fmc-ignition-");
    mounts.push(at);
    for (const stage of ["fetch", "files"]) {
      const r = spawnSync("unshare", ["--mount", "--propagation", "private", "--", "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", root, at, IGNITION_BIN, "-platform", "file", "-stage", stage, "-root", at, "-config-cache", join(scratch, "cache.json"), "-state-file", join(scratch, "state"), "-neednet", join(scratch, "neednet"), "-log-to-stdout"], {
        encoding: "utf8",
        env: { PATH: `${join(scratch, "bin")}:/usr/sbin:/usr/bin:/sbin:/bin`, IGNITION_CONFIG_FILE: configFile },
        timeout: 120_000,
      });
      if (r.status !== 0) throw new FmcError("LAB_FIRSTBOOT", `Ignition's ${stage} stage failed on ${root}: ${tail(r)}`, "the rendered config is refused by the real Ignition: fmc render -o out, then ignition-validate out/ignition/HOST.ign");
    }
    if (!existsSync(join(root, IGNITION_RESULT.slice(1)))) throw new FmcError("LAB_FIRSTBOOT", `Ignition finished without writing ${IGNITION_RESULT} on ${root}`);
    const relabelled = existsSync(relabelList) ? readFileSync(relabelList, "utf8").split("\n").filter(Boolean).map((p) => (p.startsWith(at) ? p.slice(at.length) || "/" : p)) : [];
    return { relabelled };
  } finally {
    if (!hadSelinux) rmSync(selinuxDir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
    // the bind mount went with its namespace; the empty mount point stays behind otherwise
    for (const m of mounts) rmdirSync(m); // never recursive: were the bind still there, it would fail, not empty the root
  }
}

/** Where Ignition's files stage records the units a config enables or disables. */
const IGNITION_PRESET = "/etc/systemd/system-preset/20-ignition.preset";

/**
 * Applies Ignition's presets to a root that will boot, as the root's first boot does: on
 * Flatcar systemd starts with no machine-id, so it runs `preset-all`, which enables what
 * Ignition's preset file says. A lab container's root has an empty machine-id (not a first
 * boot to systemd), so the same presets are applied offline (`systemctl --root`), for the
 * units installed in the root (preset-all never sees the others). Returns the units.
 */
export function applyIgnitionPresets(root: string): string[] {
  const file = join(root, IGNITION_PRESET.slice(1));
  if (!existsSync(file)) return [];
  const units = readFileSync(file, "utf8").split("\n").map((l) => l.trim().split(/\s+/)).filter((w) => (w[0] === "enable" || w[0] === "disable") && w[1]).map((w) => w[1]!);
  const unitDirs = ["etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"];
  const installed = units.filter((u) => /^[A-Za-z0-9@_.:\\-]+$/.test(u) && unitDirs.some((d) => existsSync(join(root, d, u))));
  if (!installed.length) return [];
  const r = spawnSync("systemctl", [`--root=${root}`, "preset", "--", ...installed], { encoding: "utf8" });
  if (r.status !== 0) throw new FmcError("LAB_FIRSTBOOT", `applying Ignition's presets in ${root} failed: ${tail(r)}`);
  return installed;
}

/** The NoCloud ISO as terraform-provider-libvirt (v0.8.x, libvirt/cloudinit_def.go createISO) builds it. */
export function buildNoCloudIso(files: NonNullable<FirstBoot["cloudInit"]>, iso: string): void {
  const dir = mkdtempSync(join(tmpdir(), "fmc-cidata-"));
  try {
    writeFileSync(join(dir, "user-data"), files.userData, { mode: 0o600 });
    writeFileSync(join(dir, "meta-data"), files.metaData, { mode: 0o600 });
    writeFileSync(join(dir, "network-config"), files.networkConfig, { mode: 0o600 });
    // the provider runs: mkisofs -output ISO -volid cidata -joliet -rock user-data meta-data network-config
    const r = spawnSync("xorriso", ["-as", "mkisofs", "-output", iso, "-volid", "cidata", "-joliet", "-rock", join(dir, "user-data"), join(dir, "meta-data"), join(dir, "network-config")], { encoding: "utf8" });
    if (r.status !== 0) throw new FmcError("LAB_FIRSTBOOT", `building the NoCloud ISO failed: ${tail(r)}`);
    chmodSync(iso, 0o600); // it holds the host's first-boot config
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The ISO's volume id (cloud-init finds a NoCloud disk by the label cidata). */
export function isoVolumeId(iso: string): string | undefined {
  const r = spawnSync("xorriso", ["-indev", iso, "-pvd_info"], { encoding: "utf8" });
  return `${r.stdout}\n${r.stderr}`.match(/^Volume Id\s*:\s*(.+)$/m)?.[1]?.trim();
}

/** Puts the ISO's files where cloud-init's NoCloud looks in a host that can't mount it. */
export function seedFromIso(iso: string, root: string): void {
  const seed = join(root, NOCLOUD_SEED.slice(1));
  rmSync(seed, { recursive: true, force: true });
  mkdirSync(join(seed, ".."), { recursive: true, mode: 0o700 });
  const r = spawnSync("xorriso", ["-osirrox", "on", "-indev", iso, "-extract", "/", seed], { encoding: "utf8" });
  if (r.status !== 0) throw new FmcError("LAB_FIRSTBOOT", `reading the NoCloud ISO failed: ${tail(r)}`);
  chmodSync(seed, 0o700);
  for (const f of ["user-data", "meta-data", "network-config"]) {
    if (!existsSync(join(seed, f))) throw new FmcError("LAB_FIRSTBOOT", `the NoCloud ISO has no ${f}`);
    chmodSync(join(seed, f), 0o600);
  }
}
