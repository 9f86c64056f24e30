// LVM: a physical volume and volume group on a device, logical volumes in order, and a
// filesystem on each; never resizes, never reformats. The last volume may take the
// remaining space (100%FREE).
import { cmd, quote, script } from "../hosts/command.js";
import { dmPathOf, type HostFacts } from "../hosts/facts.js";
import type { Change } from "./change.js";
import { FmcError } from "../errors.js";

export interface LvmSpec {
  readonly device: string;
  readonly volumeGroup: string;
  readonly volumes: ReadonlyArray<{ name: string; size: string; filesystem: "ext4" | "xfs" }>;
}

export function lvmChanges(facts: HostFacts, l: LvmSpec, ctx: { host: string; phase: string }): Change[] {
  const out: Change[] = [];
  const c = (title: string, ...commands: ReturnType<typeof cmd>[]): Change => ({ host: ctx.host, phase: ctx.phase, title, commands, notes: [] });
  if (!facts.lvm.vgs.has(l.volumeGroup)) {
    const dev = facts.blockDevices.get(l.device);
    if (!dev) throw new FmcError("NO_DEVICE", `${ctx.host}: ${l.device} does not exist`, "check storage.device against lsblk on the host");
    if (dev.fstype && dev.fstype !== "LVM2_member") {
      throw new FmcError("DEVICE_IN_USE", `${ctx.host}: ${l.device} holds a ${dev.fstype} filesystem; refusing to turn it into an LVM volume`, "wipe it by hand if its data is not needed");
    }
    out.push(c(`create volume group ${l.volumeGroup} on ${l.device}`, ...(dev.fstype ? [] : [cmd("pvcreate", "--yes", l.device)]), cmd("vgcreate", l.volumeGroup, l.device)));
  }
  for (const v of l.volumes) {
    const id = `${l.volumeGroup}/${v.name}`;
    const dev = `/dev/${id}`;
    if (!facts.lvm.lvs.has(id)) {
      const size = v.size.endsWith("%FREE") ? ["-l", v.size] : ["-L", v.size];
      out.push(c(`create logical volume ${id} (${v.size})`, cmd("lvcreate", "--yes", "-n", v.name, ...size, l.volumeGroup)));
    }
    // lsblk names LVs by their device-mapper path, never /dev/VG/LV
    const dm = facts.lvm.lvs.get(id)?.dmPath ?? dmPathOf(l.volumeGroup, v.name);
    if (!facts.blockDevices.get(dm)?.fstype) {
      // guarded on the host too: blkid decides at run time, so a volume made above is formatted once
      out.push(c(`make ${v.filesystem} on ${dev}`, script(`blkid -s TYPE -o value ${quote(dev)} >/dev/null || mkfs.${v.filesystem} -L ${quote(v.name.slice(0, 12))} ${quote(dev)}`, `mkfs.${v.filesystem} ${dev} unless it has a filesystem`)));
    }
  }
  return out;
}

export const lvmFacts = () => ({ storage: true });
