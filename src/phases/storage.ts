// storage: the storage host's data disk as the spec lays it out (LVM volumes, grown online,
// never shrunk or reformatted), each volume mounted by a systemd mount unit that comes
// back after every reboot (the seed's mounts did not), and the kernel NFS server
// exporting exactly the spec's exports to exactly their clients. The same LVM script and
// units Ignition installs on Flatcar are installed here, so a reboot activates the volume
// group and mounts the volumes before nfs-server starts, on any OS.
import { exportsFile, lvmPlan, lvmService, LVM_SCRIPT_PATH, LVM_SERVICE, nfsServerDropIn, volumeMountUnits } from "../render/storage.js";
import { NFS_STORAGE_CLASS } from "../render/kubernetes.js";
import { cmd, script } from "../hosts/command.js";
import { quote } from "../shell.js";
import { FAMILIES } from "../hosts/os.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change } from "../ops/change.js";
import { fileChange } from "../ops/file.js";
import { DM_GUARD, lvmChanges, lvmFacts, type LvmSpec } from "../ops/lvm.js";
import { mountChanges, mountFacts } from "../ops/mount.js";
import { exportsChanges, nfsdSupported, nfsFacts, nfsServerPackages, NFS_DROPIN, NFS_UNIT } from "../ops/nfs.js";
import { packageChange } from "../ops/package.js";
import { serviceChange } from "../ops/service.js";
import { unitChanges, unitFacts } from "../ops/unit.js";
import type { Host, Spec } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

const lvmSpec = (spec: Spec): LvmSpec => ({ device: spec.storage!.device, volumeGroup: spec.storage!.volumeGroup, volumes: spec.storage!.volumes });

/** What the kernel lacks for the spec's storage, from the facts (lab containers lack both). */
function missingKernelSupport(spec: Spec, facts: HostFacts): string[] {
  const st = spec.storage!;
  const out: string[] = [];
  if (st.volumes.length && facts.guards.get(DM_GUARD) !== undefined && facts.guards.get(DM_GUARD) !== 0) {
    out.push("device-mapper (no /dev/mapper/control, and modprobe -n dm_mod fails): LVM cannot create or activate volumes");
  }
  if (st.exports.length && nfsdSupported(facts) === false) {
    out.push("the NFS server (no /proc/fs/nfsd, no nfsd in /proc/filesystems, and modprobe -n nfsd fails): nothing can be exported");
  }
  return out;
}

/** What depends on the storage host alone, when it is all of the spec's stateful data. */
function singlePointOfFailure(spec: Spec): string | undefined {
  const st = spec.storage;
  if (!st) return undefined;
  const on: string[] = [];
  if (spec.database?.nfsExport) on.push(`PostgreSQL's data (${spec.database.nfsExport})`);
  if (spec.services.nfsCsi.enabled) on.push(`the ${NFS_STORAGE_CLASS} StorageClass (${st.sharedExport})`);
  const others = spec.hosts.filter((h) => h.name !== st.host && h.roles.includes("k3s-agent") && !h.roles.includes("k3s-server") && h.vm?.dataDisks.length);
  if (spec.services.longhorn.enabled && others.length === 0) on.push("every Longhorn replica (no other node has a Longhorn disk)");
  if (!on.length) return undefined;
  return `${on.join(", ")} ${on.length === 1 ? "lives" : "live"} only on ${st.host}: it is a single point of failure for ${on.length === 1 ? "it" : "them"} (no replica elsewhere; back up with fmc backup postgres)`;
}

export const storage: Phase = {
  name: "storage",
  description: "LVM volumes, mount units and the kernel NFS server on the storage host",
  hosts: (pc) => (pc.render.spec.storage ? pc.render.topo.withRole("storage").filter((h) => h.name === pc.render.spec.storage!.host) : []),
  facts: (pc) => {
    const spec = pc.render.spec;
    const st = spec.storage!;
    const mounts = st.volumes.map((v) => mountFacts(v.mount));
    return {
      ...lvmFacts(lvmSpec(spec)),
      guards: new Map([...lvmFacts(lvmSpec(spec)).guards, ...nfsFacts().guards]),
      files: new Set([...nfsFacts().files, ...unitFacts(LVM_SERVICE).files, LVM_SCRIPT_PATH, ...mounts.flatMap((m) => [...m.files])]),
      units: new Set([...nfsFacts().units, LVM_SERVICE, ...mounts.flatMap((m) => [...m.units])]),
      packages: new Set(["nfs-kernel-server", "nfs-utils", "lvm2", "xfsprogs"]),
      storage: true,
    };
  },
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const spec = pc.render.spec;
    const st = spec.storage!;
    const c = { host: host.name, phase: "storage", mask: pc.mask };
    const missing = missingKernelSupport(spec, facts);
    if (missing.length) {
      // reported, not thrown: the rest of the plan still shows; apply stops here with the reason
      const why = `${host.name}'s kernel has no ${missing.join("; no ")}`;
      return [
        {
          host: host.name,
          phase: "storage",
          title: `storage cannot be set up on ${host.name}: its kernel lacks ${missing.map((m) => m.split(" (")[0]).join(" and ")}`,
          commands: [script(`printf '%s\\n' ${quote(`fmc: ${why}`)} >&2; exit 1`, "fail: the kernel lacks what the storage needs")],
          notes: [why, "run the storage host on a kernel of its own (a VM: fmc lab up runs storage hosts as VMs), with the dm_mod and nfsd modules"],
        },
      ];
    }
    const out: Change[] = [];
    const family = FAMILIES[facts.os.family];
    const pkgs = [...nfsServerPackages(facts.os.family), ...(facts.os.family === "flatcar" ? [] : ["lvm2"]), ...(facts.os.family !== "flatcar" && st.volumes.some((v) => v.filesystem === "xfs") ? ["xfsprogs"] : [])];
    const pkg = packageChange(facts, family, pkgs, c);
    if (pkg) out.push(pkg);
    const installing = !!pkg && nfsServerPackages(facts.os.family).some((n) => !facts.packages.get(n));
    out.push(...lvmChanges(facts, lvmSpec(spec), c));
    // the boot-time LVM script and its unit: the mount units require it, as on Flatcar
    const scriptFile = fileChange(facts, { path: LVM_SCRIPT_PATH, content: lvmPlan(pc.render), mode: 0o755 }, c);
    if (scriptFile) out.push(scriptFile);
    out.push(...unitChanges(facts, { unit: LVM_SERVICE, content: lvmService(), enabled: true, running: true }, c));
    const units = volumeMountUnits(pc.render);
    st.volumes.forEach((v, i) => {
      out.push(...mountChanges(facts, { what: `/dev/${st.volumeGroup}/${v.name}`, where: v.mount, type: v.filesystem, unitText: units[i]!.content }, c));
    });
    // nfs-server waits for the exported volumes' mounts at every boot
    const dropIn = fileChange(facts, { path: NFS_DROPIN, content: nfsServerDropIn(pc.render) }, c);
    if (dropIn) out.push({ ...dropIn, commands: [...dropIn.commands, cmd("systemctl", "daemon-reload")] });
    out.push(...exportsChanges(facts, exportsFile(pc.render), c));
    const svc = serviceChange(facts, { unit: NFS_UNIT, enabled: true, running: true, installing }, c);
    if (svc) out.push(svc);
    return out;
  },
  warnings: (pc) => {
    const spof = singlePointOfFailure(pc.render.spec);
    return spof ? [spof] : [];
  },
};
