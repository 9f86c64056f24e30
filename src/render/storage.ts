// Storage: the LVM plan for the data disk (an idempotent script that Ignition runs at
// every boot), mount units so the volumes come back after reboots, the NFS exports,
// and the database host's NFS mount of its data directory.
import type { Artifact, RenderContext } from "./types.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { mountUnitName, unitFile } from "./systemd.js";

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
    `DEVICE=${st.device}`,
    `VG=${vg}`,
    'if ! vgs "$VG" >/dev/null 2>&1; then',
    '  pvs "$DEVICE" >/dev/null 2>&1 || pvcreate --yes "$DEVICE"',
    '  vgcreate "$VG" "$DEVICE"',
    "fi",
    ...st.volumes.flatMap((v) => {
      const sizeArg = v.size.endsWith("%FREE") ? `-l ${v.size}` : `-L ${v.size}`;
      const dev = `/dev/${vg}/${v.name}`;
      return [
        `lvs "$VG/${v.name}" >/dev/null 2>&1 || lvcreate --yes -n ${v.name} ${sizeArg} "$VG"`,
        `blkid -s TYPE -o value ${dev} >/dev/null 2>&1 || mkfs.${v.filesystem} -L ${v.name.slice(0, 12)} ${dev}`,
        `mkdir -p ${v.mount}`,
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
          ["What", `/dev/${st.volumeGroup}/${v.name}`],
          ["Where", v.mount],
          ["Type", v.filesystem],
          ["Options", "defaults,noatime"],
        ],
        Install: [["WantedBy", "multi-user.target"]],
      },
      HEADER_TEXT,
    ),
  }));
}

export function lvmService(): string {
  return unitFile(
    {
      Unit: [
        ["Description", "fmc: create the LVM volumes of the data disk"],
        ["After", "systemd-udev-settle.service lvm2-monitor.service"],
        ["Wants", "systemd-udev-settle.service"],
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
    ...st.exports.map((e) => `${e.path} ${e.clients.map((c) => `${c}(${e.options.join(",")})`).join(" ")}`),
  );
}

/** nfs-server waits for the exported volumes to be mounted. */
export function nfsServerDropIn(ctx: RenderContext): string {
  const paths = ctx.spec.storage!.exports.map((e) => e.path).join(" ");
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
          ["What", `${server}:${db.nfsExport}`],
          ["Where", db.dataDir],
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
      content: unitFile({ Unit: [["RequiresMountsFor", ctx.spec.database.dataDir]] }, HEADER_TEXT),
    });
  }
  return out;
}
