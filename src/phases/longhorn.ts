// longhorn-prereqs: what Longhorn needs on every K3s node, as its own environment check
// tested it (longhorn/longhorn scripts/environment_check.sh at commit 64afdec9c982, the
// last before v1.9 replaced it with longhornctl): the packages nfs-common, open-iscsi,
// cryptsetup and dmsetup (rhel-like: nfs-utils, iscsi-initiator-utils, cryptsetup,
// device-mapper), iscsid.service or iscsid.socket running, the iscsi_tcp module
// (CONFIG_ISCSI_TCP) and an NFSv4 client (CONFIG_NFS_V4*) for RWX volumes; dm_crypt is
// loaded too, for encrypted volumes. Modules are read as facts (loaded, or loadable by
// modprobe -n) and persisted in modules-load.d. A kernel without a module (lab hosts share
// this machine's kernel) cannot be fixed by fmc: the module is left out of the file, which
// names it in a comment, and the plan says so once, like sysctl keys a host cannot set.
import { cmd } from "../hosts/command.js";
import { FAMILIES } from "../hosts/os.js";
import type { HostFacts, OsFamilyName } from "../hosts/facts.js";
import type { Change } from "../ops/change.js";
import { fileChange } from "../ops/file.js";
import { moduleChanges, moduleGuards, moduleStates, type KernelModule } from "../ops/modules.js";
import { packageChange } from "../ops/package.js";
import { serviceChange } from "../ops/service.js";
import { mountChanges, mountFacts } from "../ops/mount.js";
import { unitChanges, unitFacts } from "../ops/unit.js";
import {
  K3S_LONGHORN_CONFIG, k3sLonghornConfig, k3sLonghornDropIn, LONGHORN_DISK_SCRIPT_PATH, LONGHORN_DISK_SERVICE, longhornDiskMountUnit, longhornDiskScript, longhornDiskService,
} from "../render/storage.js";
import { longhornDisks, type LonghornDisk } from "../model/capacity.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

export const LONGHORN_MODULES_FILE = "/etc/modules-load.d/fmc-longhorn.conf";

/** Kernel modules Longhorn uses, and what is lost without each. */
const LONGHORN_MODULES: readonly KernelModule[] = [
  { name: "iscsi_tcp", why: "Longhorn cannot attach volumes on this node" },
  { name: "nfsv4", why: "RWX (ReadWriteMany) Longhorn volumes cannot be mounted on this node" },
  { name: "dm_crypt", why: "encrypted Longhorn volumes cannot be used on this node" },
];

function longhornPackages(family: OsFamilyName): string[] {
  if (family === "debian-like") return ["nfs-common", "open-iscsi", "cryptsetup", "dmsetup"];
  if (family === "rhel-like") return ["nfs-utils", "iscsi-initiator-utils", "cryptsetup", "device-mapper"];
  return []; // Flatcar ships iscsid, the NFS client and cryptsetup in its image
}
const ALL_PACKAGES = [...new Set([...longhornPackages("debian-like"), ...longhornPackages("rhel-like")])];

/** iscsid by socket activation where the package has the socket; Flatcar runs the service. */
const iscsidUnit = (family: OsFamilyName) => (family === "flatcar" ? "iscsid.service" : "iscsid.socket");

/** Where the K3s unit of a node with a Longhorn disk gets its mount ordering (the same drop-in Ignition installs). */
const longhornDropInPath = (host: Host) => `/etc/systemd/system/${host.roles.includes("k3s-server") ? "k3s" : "k3s-agent"}.service.d/fmc-longhorn-disk.conf`;
const diskGuard = (d: LonghornDisk) => `block-device:${d.device}`;

const diskOf = (pc: PhaseContext, host: Host): LonghornDisk | undefined => longhornDisks(pc.render.spec).find((d) => d.host === host.name);

/**
 * A node's Longhorn disk, as Ignition sets it up on first boot: a worker's data disk formatted
 * only when blank and mounted where Longhorn looks, with the node label that makes it
 * Longhorn's default disk; on every node with a Longhorn disk (storage1's is an LV the storage
 * phase mounts) K3s ordered after the mount and failing without it, so Longhorn never writes
 * replicas into the empty directory on the root disk. No device, no disk (the plan says so
 * once, beside the node's other Longhorn changes, as for missing kernel modules).
 */
function diskChanges(pc: PhaseContext, host: Host, facts: HostFacts, disk: LonghornDisk): Change[] {
  const c = { host: host.name, phase: "longhorn-prereqs", mask: pc.mask };
  const out: Change[] = [];
  if (disk.kind === "disk") {
    if (facts.guards.get(diskGuard(disk)) !== 0) return [];
    const scriptFile = fileChange(facts, { path: LONGHORN_DISK_SCRIPT_PATH, content: longhornDiskScript(disk), mode: 0o755 }, c);
    if (scriptFile) out.push(scriptFile);
    // running, as its mount leaves it (Requires=, RemainAfterExit): a plan that stopped it
    // would stop the mount with it, under Longhorn (found by the lab's loop-device disks)
    out.push(...unitChanges(facts, { unit: LONGHORN_DISK_SERVICE, content: longhornDiskService(), enabled: true, running: true }, c));
    const mount = longhornDiskMountUnit(disk);
    out.push(...mountChanges(facts, { what: disk.device, where: disk.mount, type: "ext4", unitText: mount.content }, c));
    const label = fileChange(facts, { path: K3S_LONGHORN_CONFIG, content: k3sLonghornConfig(), mode: 0o600 }, c);
    if (label) out.push(label);
  }
  const dropIn = fileChange(facts, { path: longhornDropInPath(host), content: k3sLonghornDropIn(disk) }, c);
  if (dropIn) out.push({ ...dropIn, commands: [...dropIn.commands, cmd("systemctl", "daemon-reload")] });
  return out;
}

export const longhornPrereqs: Phase = {
  name: "longhorn-prereqs",
  description: "open-iscsi, the NFS client and kernel modules Longhorn needs on every K3s node",
  hosts: (pc) => (pc.render.spec.services.longhorn.enabled ? [...pc.render.topo.servers, ...pc.render.topo.agents] : []),
  facts: (pc, host) => {
    const disk = diskOf(pc, host);
    const own = disk?.kind === "disk" ? [unitFacts(LONGHORN_DISK_SERVICE), mountFacts(disk.mount)] : [];
    return {
      files: new Set([LONGHORN_MODULES_FILE, ...(disk ? [longhornDropInPath(host)] : []), ...(disk?.kind === "disk" ? [LONGHORN_DISK_SCRIPT_PATH, K3S_LONGHORN_CONFIG] : []), ...own.flatMap((f) => [...f.files])]),
      units: new Set(["iscsid.socket", "iscsid.service", ...own.flatMap((f) => [...f.units])]),
      packages: new Set(ALL_PACKAGES),
      ...(disk?.kind === "disk" ? { storage: true } : {}),
      guards: new Map([
        ...moduleGuards(LONGHORN_MODULES),
        ...(disk?.kind === "disk" ? [[diskGuard(disk), `[ -b ${disk.device} ]`] as [string, string]] : []),
      ]),
    };
  },
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const c = { host: host.name, phase: "longhorn-prereqs", mask: pc.mask };
    const out: Change[] = [];
    const family = facts.os.family;
    const pkgs = longhornPackages(family);
    const pkg = packageChange(facts, FAMILIES[family], pkgs, c);
    if (pkg) out.push(pkg);
    out.push(...moduleChanges(facts, { path: LONGHORN_MODULES_FILE, purpose: "kernel modules Longhorn needs", modules: LONGHORN_MODULES }, c));
    const states = moduleStates(facts, LONGHORN_MODULES);
    const iscsi = iscsidUnit(family);
    const installing = !!pkg && !facts.packages.get(family === "rhel-like" ? "iscsi-initiator-utils" : "open-iscsi");
    const svc = serviceChange(facts, { unit: iscsi, enabled: true, running: true, installing }, c);
    if (svc) out.push({ ...svc, notes: [...svc.notes, ...(states.find((m) => m.name === "iscsi_tcp")!.state === "missing" ? ["iscsid runs, but without iscsi_tcp no iSCSI session can be made"] : [])] });
    const disk = diskOf(pc, host);
    if (disk) out.push(...diskChanges(pc, host, facts, disk));
    if (disk?.kind === "disk" && facts.guards.get(diskGuard(disk)) !== 0 && out.length) {
      out[0] = { ...out[0]!, notes: [...out[0]!.notes, `${disk.device} is not a block device on ${host.name}: the spec's data disk is missing, so Longhorn gets no disk here (and K3s is not tied to a mount that cannot exist)`] };
    }
    return out;
  },
};
