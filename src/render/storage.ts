// Storage: the LVM plan for the data disk (an idempotent script that Ignition runs at
// every boot), mount units so the volumes come back after reboots, the NFS exports,
// and the database host's NFS mount of its data directory.
import type { Artifact, RenderContext } from "./types.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { mountUnitName, unitFile } from "./systemd.js";
import { configWord, sh, systemdPath } from "./quote.js";

export const LVM_SERVICE = "fmc-lvm.service";
export const LVM_SCRIPT_PATH = "/opt/fmc/lvm-plan.sh";

export function lvmPlan(ctx: RenderContext): string {
  const st = ctx.spec.storage!;
  const vg = st.volumeGroup;
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "# Idempotent: creates only what is missing, never resizes or formats a filesystem that exists.",
    "set -euo pipefail",
    `DEVICE=${sh(st.device)}`,
    `VG=${sh(vg)}`,
    'if ! vgs "$VG" >/dev/null 2>&1; then',
    '  pvs "$DEVICE" >/dev/null 2>&1 || pvcreate --yes "$DEVICE"',
    '  vgcreate "$VG" "$DEVICE"',
    "fi",
    ...st.volumes.flatMap((v) => {
      const sizeArg = v.size.endsWith("%FREE") ? `-l ${sh(v.size)}` : `-L ${sh(v.size)}`;
      const dev = sh(`/dev/${vg}/${v.name}`);
      return [
        `lvs ${sh(`${vg}/${v.name}`)} >/dev/null 2>&1 || lvcreate --yes -n ${sh(v.name)} ${sizeArg} "$VG"`,
        `blkid -s TYPE -o value ${dev} >/dev/null 2>&1 || mkfs.${v.filesystem} -L ${sh(v.name.slice(0, 12))} ${dev}`,
        `mkdir -p ${sh(v.mount)}`,
      ];
    }),
  );
}

export function volumeMountUnits(ctx: RenderContext): Array<{ name: string; content: string }> {
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
  return unitFile(
    {
      Unit: [
        ["Description", "fmc: create the LVM volumes of the data disk"],
        ["DefaultDependencies", "no"],
        ["After", "systemd-udev-settle.service lvm2-monitor.service local-fs-pre.target"],
        ["Wants", "systemd-udev-settle.service"],
        ["Before", "local-fs.target shutdown.target"],
        ["Conflicts", "shutdown.target"],
      ],
      Service: [
        ["Type", "oneshot"],
        ["RemainAfterExit", "yes"],
        ["ExecStart", LVM_SCRIPT_PATH],
      ],
      Install: [["WantedBy", "multi-user.target"]],
    },
    HEADER_TEXT,
  );
}

export function exportsFile(ctx: RenderContext): string {
  const st = ctx.spec.storage!;
  return lines(
    HEADER("#"),
    ...st.exports.map((e) => {
      const word = (v: string) => configWord("/etc/exports", v);
      return `${word(e.path)} ${e.clients.map((c) => `${word(c)}(${e.options.map(word).join(",")})`).join(" ")}`;
    }),
  );
}

/** nfs-server waits for the exported volumes to be mounted. */
export function nfsServerDropIn(ctx: RenderContext): string {
  const paths = ctx.spec.storage!.exports.map((e) => systemdPath(e.path)).join(" ");
  return unitFile({ Unit: [["RequiresMountsFor", paths]] }, HEADER_TEXT);
}

export function databaseMount(ctx: RenderContext): { name: string; content: string } | undefined {
  const db = ctx.spec.database;
  const st = ctx.spec.storage;
  if (!db?.nfsExport || !st) return undefined;
  const server = ctx.topo.host(st.host).address;
  return {
    name: mountUnitName(db.dataDir),
    content: unitFile(
      {
        Unit: [
          ["Description", `PostgreSQL data from ${st.host}:${db.nfsExport}`],
          ["Wants", "network-online.target"],
          ["After", "network-online.target"],
        ],
        Mount: [
          ["What", systemdPath(`${server}:${db.nfsExport}`)],
          ["Where", systemdPath(db.dataDir)],
          ["Type", "nfs4"],
          ["Options", "rw,hard,noatime,vers=4.2,_netdev"],
        ],
        Install: [["WantedBy", "remote-fs.target"]],
      },
      HEADER_TEXT,
    ),
  };
}

export function renderStorage(ctx: RenderContext): Artifact[] {
  const st = ctx.spec.storage;
  if (!st) return [];
  const out: Artifact[] = [
    { path: `storage/${st.host}/lvm-plan.sh`, content: lvmPlan(ctx), executable: true },
    { path: `storage/${st.host}/exports`, content: exportsFile(ctx) },
    { path: `storage/${st.host}/${LVM_SERVICE}`, content: lvmService() },
    { path: `storage/${st.host}/nfs-server.service.d/fmc.conf`, content: nfsServerDropIn(ctx) },
    ...volumeMountUnits(ctx).map((u) => ({ path: `storage/${st.host}/${u.name}`, content: u.content })),
  ];
  const dbm = databaseMount(ctx);
  if (dbm && ctx.spec.database) {
    out.push({ path: `storage/${ctx.spec.database.host}/${dbm.name}`, content: dbm.content });
    out.push({
      path: `storage/${ctx.spec.database.host}/postgresql.service.d/fmc.conf`,
      content: unitFile({ Unit: [["RequiresMountsFor", systemdPath(ctx.spec.database.dataDir)]] }, HEADER_TEXT),
    });
  }
  return out;
}
