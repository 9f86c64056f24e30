// Storage: the LVM plan for the data disk (an idempotent script that Ignition runs at
// every boot), mount units so the volumes come back after reboots, the NFS exports,
// the database host's NFS mount of its data directory, and the Longhorn disks: the
// storage host's Longhorn volume and every other K3s agent's first data disk.
import type { LonghornDisk } from "../model/capacity.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { mountUnitName, unitFile } from "./systemd.js";
import { configWord, sh, systemdPath } from "./quote.js";

export const LVM_SERVICE = "fmc-lvm.service";
export const LVM_SCRIPT_PATH = "/opt/fmc/lvm-plan.sh";
export const LONGHORN_DISK_SERVICE = "fmc-longhorn-disk.service";
export const LONGHORN_DISK_SCRIPT_PATH = "/opt/fmc/longhorn-disk.sh";
/** K3s reads every file here after config.yaml; `key+` appends to a list (K3s "multiple config files"). */
export const K3S_LONGHORN_CONFIG = "/etc/rancher/k3s/config.yaml.d/50-fmc-longhorn.yaml";

/**
 * blkid -p (a low-level probe, no cache) exits 0 when it finds a signature (filesystem,
 * partition table, LVM, RAID…) and 2 when it finds none; 4 (usage or I/O error) and
 * 8 (ambivalent probe) mean fmc cannot tell, so the device may hold data.
 */
export const BLKID_NO_SIGNATURE = 2;

/**
 * Shell: a new filesystem on `dev` only when blkid finds no signature at all. A device
 * with any signature is left alone; any other blkid failure stops the script.
 */
export function mkfsIfBlank(dev: string, filesystem: "ext4" | "xfs", label: string): string[] {
  const d = sh(dev);
  return [
    `rc=0; blkid -p ${d} >/dev/null 2>&1 || rc=$?`,
    'case "$rc" in',
    "  0) ;;",
    `  ${BLKID_NO_SIGNATURE}) mkfs.${filesystem} -L ${sh(label.slice(0, 12))} ${d} ;;`,
    `  *) printf 'fmc: blkid -p %s failed (exit %s): not formatting a device that may hold data\\n' ${d} "$rc" >&2; exit 1 ;;`,
    "esac",
  ];
}

export function lvmPlan(ctx: ClusterContext): string {
  const st = ctx.spec.storage!;
  const vg = st.volumeGroup;
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "# Idempotent: creates only what is missing, never resizes, never formats a device that holds a signature.",
    "set -euo pipefail",
    `DEVICE=${sh(st.device)}`,
    `VG=${sh(vg)}`,
    'if ! vgs "$VG" >/dev/null 2>&1; then',
    '  if ! pvs "$DEVICE" >/dev/null 2>&1; then',
    // pvcreate wipes what it finds when told --yes: only a blank device becomes a PV
    '    rc=0; blkid -p "$DEVICE" >/dev/null 2>&1 || rc=$?',
    `    if [ "$rc" != ${BLKID_NO_SIGNATURE} ]; then printf 'fmc: %s is not blank (blkid -p exit %s): not making it an LVM volume\\n' "$DEVICE" "$rc" >&2; exit 1; fi`,
    '    pvcreate "$DEVICE"',
    "  fi",
    '  vgcreate "$VG" "$DEVICE"',
    "fi",
    // a volume group found at boot may be inactive (no udev autoactivation): its LVs have no device yet
    'vgchange -ay "$VG" >/dev/null',
    ...st.volumes.flatMap((v) => {
      const sizeArg = v.size.endsWith("%FREE") ? `-l ${sh(v.size)}` : `-L ${sh(v.size)}`;
      const dev = `/dev/${vg}/${v.name}`;
      return [
        `lvs ${sh(`${vg}/${v.name}`)} >/dev/null 2>&1 || lvcreate --yes -n ${sh(v.name)} ${sizeArg} "$VG"`,
        ...mkfsIfBlank(dev, v.filesystem, v.name),
        `mkdir -p ${sh(v.mount)}`,
      ];
    }),
  );
}

export function volumeMountUnits(ctx: ClusterContext): Array<{ name: string; content: string }> {
  const st = ctx.spec.storage!;
  return st.volumes.map((v) => ({
    name: mountUnitName(v.mount),
    content: unitFile(
      {
        Unit: [
          ["Description", `${v.name} on ${v.mount}`],
          ["Requires", LVM_SERVICE],
          ["After", LVM_SERVICE],
        ],
        Mount: [
          ["What", systemdPath(`/dev/${st.volumeGroup}/${v.name}`)],
          ["Where", systemdPath(v.mount)],
          ["Type", v.filesystem],
          // nofail: a missing data disk must not stop the boot; nfs-server waits for these mounts anyway
          ["Options", "defaults,noatime,nofail"],
        ],
        Install: [["WantedBy", "multi-user.target"]],
      },
      HEADER_TEXT,
    ),
  }));
}

/**
 * Runs early, before local-fs.target like a mount does: with default dependencies it
 * would wait for sysinit.target, which waits for local-fs.target, which waits for the
 * mounts that wait for this service (an ordering cycle systemd breaks at random).
 */
export function lvmService(): string {
  return earlyOneshot("fmc: create the LVM volumes of the data disk", "systemd-udev-settle.service lvm2-monitor.service local-fs-pre.target", LVM_SCRIPT_PATH);
}

/** A oneshot that runs before local-fs.target, outside the default dependencies (see lvmService). */
function earlyOneshot(description: string, after: string, script: string): string {
  return unitFile(
    {
      Unit: [
        ["Description", description],
        ["DefaultDependencies", "no"],
        ["After", after],
        ["Wants", "systemd-udev-settle.service"],
        ["Before", "local-fs.target shutdown.target"],
        ["Conflicts", "shutdown.target"],
      ],
      Service: [
        ["Type", "oneshot"],
        ["RemainAfterExit", "yes"],
        ["ExecStart", script],
      ],
      Install: [["WantedBy", "multi-user.target"]],
    },
    HEADER_TEXT,
  );
}

/** The user a squashed root becomes on the NFS server (exports(5) anonuid/anongid: nobody, 65534). */
const NFS_ANON_ID = 65534;

/**
 * An export's options. The shared export (the nfs-shared class's, mounted by pods of a whole
 * subnet) is always root_squash: a container's root must not be root on the storage host's
 * files. The PostgreSQL export keeps the spec's options (no_root_squash by default): the
 * database host's root creates the cluster directory and hands it to postgres (chown,
 * pg_createcluster/initdb as root), which a squashed root can't; fmc validate warns when
 * no_root_squash reaches more than the hosts that need it.
 */
function exportOptions(ctx: ClusterContext, e: { path: string; options: readonly string[] }): string[] {
  if (e.path !== ctx.spec.storage?.sharedExport) return [...e.options];
  return [...e.options.filter((o) => o !== "no_root_squash" && o !== "root_squash"), "root_squash"];
}

export function exportsFile(ctx: ClusterContext): string {
  const st = ctx.spec.storage!;
  return lines(
    HEADER("#"),
    ...st.exports.map((e) => {
      const word = (v: string) => configWord("/etc/exports", v);
      return `${word(e.path)} ${e.clients.map((c) => `${word(c)}(${exportOptions(ctx, e).map(word).join(",")})`).join(" ")}`;
    }),
  );
}

/**
 * nfs-server waits for the exported volumes to be mounted. The shared export's top
 * directory belongs to the user squashed root becomes, so the NFS CSI controller (root in
 * its pod, nobody here) can still create each volume's directory in it.
 */
export function nfsServerDropIn(ctx: ClusterContext): string {
  const st = ctx.spec.storage!;
  const paths = st.exports.map((e) => systemdPath(e.path)).join(" ");
  const shared = st.exports.some((e) => e.path === st.sharedExport);
  return unitFile(
    {
      Unit: [["RequiresMountsFor", paths]],
      ...(shared ? { Service: [["ExecStartPre", `/bin/chown ${NFS_ANON_ID}:${NFS_ANON_ID} ${systemdPath(st.sharedExport)}`]] as Array<[string, string]> } : {}),
    },
    HEADER_TEXT,
  );
}

/** The worker's Longhorn disk: a filesystem only on a blank device, and its mount point. */
export function longhornDiskScript(disk: LonghornDisk): string {
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "# Idempotent: formats the Longhorn disk only when it holds no signature at all.",
    "set -euo pipefail",
    ...mkfsIfBlank(disk.device, "ext4", "longhorn"),
    `mkdir -p ${sh(disk.mount)}`,
  );
}

/** Like the LVM service: runs before local-fs.target, so the mount that needs it can wait. */
export function longhornDiskService(): string {
  return earlyOneshot("fmc: format the Longhorn disk when it is blank", "systemd-udev-settle.service local-fs-pre.target", LONGHORN_DISK_SCRIPT_PATH);
}

export function longhornDiskMountUnit(disk: LonghornDisk): { name: string; content: string } {
  return {
    name: mountUnitName(disk.mount),
    content: unitFile(
      {
        Unit: [
          ["Description", `Longhorn disk ${disk.device} on ${disk.mount}`],
          ["Requires", LONGHORN_DISK_SERVICE],
          ["After", LONGHORN_DISK_SERVICE],
        ],
        Mount: [
          ["What", systemdPath(disk.device)],
          ["Where", systemdPath(disk.mount)],
          ["Type", "ext4"],
          ["Options", "defaults,noatime,nofail"],
        ],
        Install: [["WantedBy", "multi-user.target"]],
      },
      HEADER_TEXT,
    ),
  };
}

/**
 * The K3s unit waits for the Longhorn disk and fails without it: Longhorn would otherwise
 * write replicas into the empty directory on the root disk.
 */
export function k3sLonghornDropIn(disk: LonghornDisk): string {
  return unitFile({ Unit: [["RequiresMountsFor", systemdPath(disk.mount)]] }, HEADER_TEXT);
}

/**
 * A node label for Longhorn (createDefaultDiskLabeledNodes): a default disk at
 * defaultDataPath, which is where the data disk is mounted. The storage host gets the
 * label from its own config.yaml. K3s has no node annotations (k3s-io/k3s#2626), so
 * Longhorn's per-node default-disks-config annotation is not used: one disk per node.
 */
export function k3sLonghornConfig(): string {
  return `# ${HEADER_TEXT}\nnode-label+:\n  - node.longhorn.io/create-default-disk=true\n`;
}

export function renderStorage(ctx: ClusterContext): Artifact[] {
  const st = ctx.spec.storage;
  if (!st) return [];
  const out: Artifact[] = [
    { path: `storage/${st.host}/lvm-plan.sh`, content: lvmPlan(ctx), executable: true },
    { path: `storage/${st.host}/exports`, content: exportsFile(ctx) },
    { path: `storage/${st.host}/${LVM_SERVICE}`, content: lvmService() },
    { path: `storage/${st.host}/nfs-server.service.d/fmc.conf`, content: nfsServerDropIn(ctx) },
    ...volumeMountUnits(ctx).map((u) => ({ path: `storage/${st.host}/${u.name}`, content: u.content })),
  ];
  // the database host's NFS mount and PostgreSQL's binding to it: src/render/database.ts
  return out;
}
