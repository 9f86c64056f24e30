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
import { packageChange } from "../ops/package.js";
import { serviceChange } from "../ops/service.js";
import type { Host } from "../spec/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

export const LONGHORN_MODULES_FILE = "/etc/modules-load.d/fmc-longhorn.conf";

/** Kernel modules Longhorn uses, and what is lost without each. */
export const LONGHORN_MODULES: ReadonlyArray<{ name: string; why: string }> = [
  { name: "iscsi_tcp", why: "Longhorn cannot attach volumes on this node" },
  { name: "nfsv4", why: "RWX (ReadWriteMany) Longhorn volumes cannot be mounted on this node" },
  { name: "dm_crypt", why: "encrypted Longhorn volumes cannot be used on this node" },
];

export function longhornPackages(family: OsFamilyName): string[] {
  if (family === "debian-like") return ["nfs-common", "open-iscsi", "cryptsetup", "dmsetup"];
  if (family === "rhel-like") return ["nfs-utils", "iscsi-initiator-utils", "cryptsetup", "device-mapper"];
  return []; // Flatcar ships iscsid, the NFS client and cryptsetup in its image
}
const ALL_PACKAGES = [...new Set([...longhornPackages("debian-like"), ...longhornPackages("rhel-like")])];

const loadedGuard = (m: string) => `module-loaded:${m}`;
const loadableGuard = (m: string) => `module-loadable:${m}`;

/** iscsid by socket activation where the package has the socket; Flatcar runs the service. */
export const iscsidUnit = (family: OsFamilyName) => (family === "flatcar" ? "iscsid.service" : "iscsid.socket");

/** Each module: loaded now, loadable, or missing from this kernel. */
export function moduleStates(facts: HostFacts): Array<{ name: string; why: string; state: "loaded" | "loadable" | "missing" }> {
  return LONGHORN_MODULES.map((m) => ({
    ...m,
    state: facts.guards.get(loadedGuard(m.name)) === 0 ? "loaded" : facts.guards.get(loadableGuard(m.name)) === 0 ? "loadable" : "missing",
  }));
}

export function modulesFile(states: ReturnType<typeof moduleStates>): string {
  const have = states.filter((m) => m.state !== "missing");
  const missing = states.filter((m) => m.state === "missing");
  return [
    "# Managed by fmc: kernel modules Longhorn needs, loaded at boot.",
    ...(missing.length ? [`# not available on this kernel: ${missing.map((m) => m.name).join(", ")}`] : []),
    ...have.map((m) => m.name),
    "",
  ].join("\n");
}

export const longhornPrereqs: Phase = {
  name: "longhorn-prereqs",
  description: "open-iscsi, the NFS client and kernel modules Longhorn needs on every K3s node",
  hosts: (pc) => (pc.render.spec.services.longhorn.enabled ? [...pc.render.topo.servers, ...pc.render.topo.agents] : []),
  facts: () => ({
    files: new Set([LONGHORN_MODULES_FILE]),
    units: new Set(["iscsid.socket", "iscsid.service"]),
    packages: new Set(ALL_PACKAGES),
    guards: new Map(
      LONGHORN_MODULES.flatMap((m): Array<[string, string]> => [
        [loadedGuard(m.name), `[ -d /sys/module/${m.name} ]`],
        [loadableGuard(m.name), `modprobe -n -q ${m.name}`],
      ]),
    ),
  }),
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const c = { host: host.name, phase: "longhorn-prereqs", mask: pc.mask };
    const out: Change[] = [];
    const family = facts.os.family;
    const pkgs = longhornPackages(family);
    const pkg = packageChange(facts, FAMILIES[family], pkgs, c);
    if (pkg) out.push(pkg);
    const states = moduleStates(facts);
    const missing = states.filter((m) => m.state === "missing");
    const notes = missing.map((m) => `kernel module ${m.name} is not available on this kernel (not loaded, modprobe -n fails): ${m.why}; fmc cannot fix that, give the node a kernel with it`);
    const file = fileChange(facts, { path: LONGHORN_MODULES_FILE, content: modulesFile(states) }, c);
    if (file) out.push({ ...file, notes: [...file.notes, ...notes] });
    const toLoad = states.filter((m) => m.state === "loadable").map((m) => m.name);
    if (toLoad.length) out.push({ host: host.name, phase: "longhorn-prereqs", title: `load kernel modules ${toLoad.join(", ")}`, commands: [cmd("modprobe", "-a", ...toLoad)], notes: [] });
    const iscsi = iscsidUnit(family);
    const installing = !!pkg && !facts.packages.get(family === "rhel-like" ? "iscsi-initiator-utils" : "open-iscsi");
    const svc = serviceChange(facts, { unit: iscsi, enabled: true, running: true, installing }, c);
    if (svc) out.push({ ...svc, notes: [...svc.notes, ...(states.find((m) => m.name === "iscsi_tcp")!.state === "missing" ? ["iscsid runs, but without iscsi_tcp no iSCSI session can be made"] : [])] });
    return out;
  },
};
