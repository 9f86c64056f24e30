// LVM: a physical volume and volume group on a device, logical volumes in order, and a
// filesystem on each. A volume the spec grows is grown online with its filesystem
// (lvextend -r); shrinking, or another filesystem on a volume, is refused. A device is
// formatted or made a physical volume only when blkid -p finds no signature on it (exit
// 2): any other answer means it may hold data. The last volume may take the remaining
// space (100%FREE) when it is created; it is never resized afterwards.
import { cmd, script } from "../hosts/command.js";
import { quote } from "../shell.js";
import { dmPathOf, type HostFacts } from "../hosts/facts.js";
import type { Change, ChangeSite } from "./change.js";
import { FmcError } from "../errors.js";
import { lvmBytes } from "../model/capacity.js";
import { BLKID_NO_SIGNATURE, mkfsIfBlank } from "../render/storage.js";

export interface LvmSpec {
  readonly device: string;
  readonly volumeGroup: string;
  readonly volumes: ReadonlyArray<{ name: string; size: string; filesystem: "ext4" | "xfs" }>;
}

/** The guard holding `blkid -p DEV`'s exit code (0 a signature, 2 none, else unknown). */
export const blkidGuard = (dev: string) => `blkid:${dev}`;
/** Exit 0 when the kernel has device-mapper (LVM needs it), built in or as a module. */
export const DM_GUARD = "kernel:device-mapper";
export const DM_TEST = "[ -e /dev/mapper/control ] || modprobe -n -q dm_mod";
/** LVM's default extent: sizes are rounded up to it, so a smaller difference is no change. */
const EXTENT = 4 * 1024 ** 2;

const GiB = (bytes: number) => `${Number((bytes / 1024 ** 3).toFixed(2))} GiB`;
const lvDevice = (l: LvmSpec, name: string) => `/dev/${l.volumeGroup}/${name}`;

/** Facts LVM planning needs: block devices and LVM, blkid answers, and device-mapper support. */
export function lvmFacts(l: LvmSpec) {
  const devices = [l.device, ...l.volumes.map((v) => lvDevice(l, v.name))];
  return { storage: true, guards: new Map([[DM_GUARD, DM_TEST], ...devices.map((d): [string, string] => [blkidGuard(d), `blkid -p ${quote(d)}`])]) };
}

/** Why blkid's answer does not allow a new filesystem or physical volume, or undefined when it does. */
function notBlank(facts: HostFacts, dev: string, host: string): FmcError | undefined {
  const code = facts.guards.get(blkidGuard(dev));
  if (code === undefined || code === BLKID_NO_SIGNATURE) return undefined;
  if (code === 0) return new FmcError("DEVICE_IN_USE", `${host}: ${dev} holds a signature (blkid -p finds one, lsblk names no filesystem); refusing to format it`, `look at it with blkid -p ${dev} and wipefs -n ${dev}; wipe it by hand if its data is not needed`);
  return new FmcError("BLKID_FAILED", `${host}: blkid -p ${dev} exited ${code}${code === 8 ? " (ambivalent: more than one signature)" : code === 4 ? " (usage or I/O error)" : ""}: fmc cannot tell whether it holds data, so it does not format it`, `look at it with blkid -p ${dev} and wipefs -n ${dev}`);
}

export function lvmChanges(facts: HostFacts, l: LvmSpec, ctx: ChangeSite): Change[] {
  const out: Change[] = [];
  const c = (title: string, ...commands: ReturnType<typeof cmd>[]): Change => ({ host: ctx.host, phase: ctx.phase, title, commands, notes: [] });
  const vg = l.volumeGroup;
  if (!facts.lvm.vgs.has(vg)) {
    const dev = facts.blockDevices.get(l.device);
    if (!dev) throw new FmcError("NO_DEVICE", `${ctx.host}: ${l.device} does not exist`, "check storage.device against lsblk on the host");
    if (dev.fstype && dev.fstype !== "LVM2_member") {
      throw new FmcError("DEVICE_IN_USE", `${ctx.host}: ${l.device} holds a ${dev.fstype} filesystem; refusing to turn it into an LVM volume`, "wipe it by hand if its data is not needed");
    }
    if (!dev.fstype) {
      const why = notBlank(facts, l.device, ctx.host);
      if (why) throw why;
    }
    // checked again on the host when it runs: the facts may be minutes old
    const pv = script(
      `set -u; rc=0; blkid -p ${quote(l.device)} >/dev/null 2>&1 || rc=$?; if [ "$rc" != ${BLKID_NO_SIGNATURE} ]; then printf 'fmc: %s is not blank (blkid -p exit %s); not making it an LVM volume\\n' ${quote(l.device)} "$rc" >&2; exit 1; fi; pvcreate --yes ${quote(l.device)}`,
      `pvcreate --yes ${l.device} if blkid -p finds no signature`,
    );
    out.push(c(`create volume group ${vg} on ${l.device}`, ...(dev.fstype ? [] : [pv]), cmd("vgcreate", vg, l.device)));
  }
  // LVs that exist but have no device node: the group was not activated (at boot, or after a move)
  const inactive = l.volumes.filter((v) => {
    const lv = facts.lvm.lvs.get(`${vg}/${v.name}`);
    return lv && !facts.blockDevices.has(lv.dmPath);
  });
  if (inactive.length) {
    // their filesystems are unknown until then: apply re-reads the facts after it and plans the rest
    out.push({ ...c(`activate volume group ${vg} (${inactive.map((v) => v.name).join(", ")} inactive)`, cmd("vgchange", "-ay", vg)), refreshesFacts: true });
  }
  let free = facts.lvm.vgs.get(vg)?.free ?? 0;
  for (const v of l.volumes) {
    const id = `${vg}/${v.name}`;
    const dev = lvDevice(l, v.name);
    const lv = facts.lvm.lvs.get(id);
    const want = lvmBytes(v.size);
    if (!lv) {
      const size = want === undefined ? ["-l", v.size] : ["-L", v.size];
      out.push(c(`create logical volume ${id} (${v.size})`, cmd("lvcreate", "--yes", "-n", v.name, ...size, vg)));
      out.push(c(`make ${v.filesystem} on ${dev}`, script(["set -eu", ...mkfsIfBlank(dev, v.filesystem, v.name)].join("\n"), `mkfs.${v.filesystem} ${dev} if blkid -p finds no signature`)));
      continue;
    }
    if (inactive.includes(v)) continue;
    // lsblk names LVs by their device-mapper path, never /dev/VG/LV
    const fstype = facts.blockDevices.get(lv.dmPath ?? dmPathOf(vg, v.name))?.fstype ?? null;
    if (fstype && fstype !== v.filesystem) {
      throw new FmcError("FILESYSTEM_CHANGED", `${ctx.host}: ${dev} holds ${fstype}, the spec says ${v.filesystem}; fmc never reformats a volume`, `set storage.volumes[].filesystem back to ${fstype}, or move the data off and remove the volume by hand`);
    }
    if (!fstype) {
      const why = notBlank(facts, dev, ctx.host);
      if (why) throw why;
      out.push(c(`make ${v.filesystem} on ${dev}`, script(["set -eu", ...mkfsIfBlank(dev, v.filesystem, v.name)].join("\n"), `mkfs.${v.filesystem} ${dev} if blkid -p finds no signature`)));
    }
    if (want === undefined) continue; // %FREE: sized once, at creation
    if (want + EXTENT <= lv.size) {
      throw new FmcError("SHRINK_REFUSED", `${ctx.host}: ${id} is ${GiB(lv.size)}, the spec asks for ${v.size} (${GiB(want)}): fmc never shrinks a volume`, `set its size to at least ${GiB(lv.size)} (${Math.ceil(lv.size / 1024 ** 2)}M) in the spec`);
    }
    if (want > lv.size) {
      const more = want - lv.size;
      if (more > free) {
        throw new FmcError("NO_SPACE", `${ctx.host}: growing ${id} from ${GiB(lv.size)} to ${v.size} needs ${GiB(more)}; volume group ${vg} has ${GiB(free)} free`, `grow the disk and run pvresize ${l.device} on ${ctx.host}, or ask for less`);
      }
      free -= more;
      // -r grows the filesystem with it, online (resize2fs / xfs_growfs through fsadm)
      out.push({ ...c(`grow ${id} from ${GiB(lv.size)} to ${v.size} with its ${v.filesystem} filesystem`, cmd("lvextend", "-r", "-L", v.size, id)), notes: ["online: the filesystem stays mounted and exported"] });
    }
  }
  return out;
}
