// Storage: the storage host's LVM volumes and NFS exports (no system directories, nothing
// twice, %FREE last), Longhorn and the NFS StorageClass with what they need, and
// Longhorn's schedulable space against the volumes the charts request.
import { parseCidr, parseIp } from "../net.js";
import { LONGHORN_RESERVED_PERCENT, longhornCapacity } from "../capacity.js";
import { needHost, type Checker, type Names, type Report } from "./context.js";
import { NFS_EXPORT_DEFAULT_OPTIONS } from "../schema.js";

/**
 * Mount points that would hide the system's own files (or are the kernel's): data
 * volumes, the database directory and exports go elsewhere.
 */
const SYSTEM_TREES = ["/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr"];
const SYSTEM_DIRS = ["/home", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib", "/var/log"];
export function systemPath(p: string): boolean {
  return SYSTEM_DIRS.includes(p) || SYSTEM_TREES.some((t) => p === t || p.startsWith(`${t}/`));
}

export function checkStorage(c: Checker, names: Names): void {
  const { spec, err, warn } = c;
  const st = spec.storage;
  const exportPaths = new Set(st?.exports.map((e) => e.path) ?? []);
  if (st) {
    needHost(c, names, "storage.host", st.host, "storage");
    const mounts = new Set<string>();
    const lvNames = new Set<string>();
    st.volumes.forEach((v, i) => {
      if (systemPath(v.mount)) err(`storage.volumes[${i}].mount`, `${v.mount} is a system directory: a volume mounted there hides the system's own files`, "mount data volumes under their own directory, such as /srv/nfs/NAME");
      if (lvNames.has(v.name)) err(`storage.volumes[${i}].name`, `logical volume ${v.name} is listed twice`);
      lvNames.add(v.name);
      if (mounts.has(v.mount)) err(`storage.volumes[${i}].mount`, `${v.mount} is mounted twice`);
      mounts.add(v.mount);
    });
    const free = st.volumes.filter((v) => v.size.endsWith("%FREE"));
    if (free.length > 1) err("storage.volumes", "only one volume can take the remaining space (%FREE)");
    if (free.length === 1 && st.volumes.at(-1) !== free[0]) err("storage.volumes", "the %FREE volume must be the last one", "LVM allocates volumes in order");
    const exported = new Set<string>();
    st.exports.forEach((e, i) => {
      if (exported.has(e.path)) err(`storage.exports[${i}].path`, `${e.path} is exported twice`, "list all its clients in one entry");
      exported.add(e.path);
      if (systemPath(e.path)) err(`storage.exports[${i}].path`, `${e.path} is a system directory; fmc does not export it`);
      const byDefault = e.options.length === NFS_EXPORT_DEFAULT_OPTIONS.length && e.options.every((o, k) => o === NFS_EXPORT_DEFAULT_OPTIONS[k]);
      if (e.path === st.sharedExport) {
        // the renderer exports it root_squash whatever the spec says (root in any pod would be root on the storage host)
        if (e.options.includes("no_root_squash") && !byDefault) warn(`storage.exports[${i}].options`, `no_root_squash is ignored on the shared export ${e.path}: it is always exported root_squash`, "remove no_root_squash from this export");
      } else if (e.options.includes("no_root_squash")) {
        const wide = e.clients.filter((x) => x === "*" || (x.includes("/") && Number(x.split("/")[1]) < 16));
        if (wide.length) warn(`storage.exports[${i}].options`, `no_root_squash for ${wide.join(", ")}: root on any of those machines is root on ${e.path}`, "list the clients that need it, or use root_squash");
      }
      if (!st.volumes.some((v) => e.path === v.mount || e.path.startsWith(`${v.mount}/`))) {
        warn(`storage.exports[${i}].path`, `${e.path} is not on any storage volume: it lives on the root disk`);
      }
      e.clients.forEach((x, j) => {
        const ok = x.includes("/") ? typeof parseCidr(x) === "object" : parseIp(x) !== undefined;
        if (!ok) err(`storage.exports[${i}].clients[${j}]`, `"${x}" is not an IPv4 address or CIDR`);
      });
    });
    if (!mounts.has(st.longhornPath)) {
      warn("storage.longhornPath", `${st.longhornPath} is not a storage volume mount: Longhorn would fill the root disk`);
    }
    if (spec.services.nfsCsi.enabled && !exportPaths.has(st.sharedExport)) {
      err("storage.sharedExport", `${st.sharedExport} is not in storage.exports`, "the RWX StorageClass needs an NFS export");
    }
  }
  if (spec.services.longhorn.enabled && !spec.hosts.some((h) => h.roles.includes("storage"))) {
    c.errOf("hosts")("services.longhorn", "Longhorn is enabled but no host has role storage", "add role storage to a host or set services.longhorn.enabled: false");
  }
  if (spec.services.longhorn.enabled && st) checkLonghornCapacity(c, c.errOf("hosts"), c.warnOf("hosts"));
  if (spec.services.nfsCsi.enabled && !st) err("services.nfsCsi", "the NFS StorageClass is enabled but there is no storage section");
  for (const [svc, chart] of Object.entries(spec.services)) {
    // the ingress (K3s's Traefik) and Kibana (an ECK resource) have no volumes of their own
    if (!chart.enabled || !("storageClass" in chart) || !chart.storageClass) continue;
    const backing = chart.storageClass === "longhorn" ? spec.services.longhorn : spec.services.nfsCsi;
    if (!backing.enabled) err(`services.${svc}.storageClass`, `${chart.storageClass} is used but its provider is disabled`);
  }
}

/**
 * Longhorn's schedulable space against the volumes the charts request: each node's disk
 * minus the reserved share, each volume's replicas on different nodes. More than fits
 * is an error: Longhorn would leave replicas unscheduled and the volumes would not attach.
 */
function checkLonghornCapacity(c: Checker, err: Report, warn: Report) {
  const { spec } = c;
  const cap = longhornCapacity(spec);
  const gib = (n: number) => `${Number(n.toFixed(1))} GiB`;
  const nodes = cap.disks.length;
  const explicit = spec.storage?.longhornReplicas;
  if (explicit !== undefined && explicit > nodes) {
    return err("storage.longhornReplicas", `${explicit} replicas need ${explicit} nodes with a Longhorn disk; the spec has ${nodes}${nodes ? ` (${cap.disks.map((d) => d.host).join(", ")})` : ""}`, "give more K3s agents a data disk (hosts[].vm.dataDisks), or lower storage.longhornReplicas");
  }
  if (!cap.claims.length) return;
  const single = cap.claims.some((x) => x.replicas !== cap.replicas);
  const claimText = (x: (typeof cap.claims)[number]) => `${x.what} ${x.count} × ${gib(x.sizeGiB)}${x.replicas !== cap.replicas ? ` at ${x.replicas} replica` : ""}`;
  const requested = `the charts request ${gib(cap.requestedGiB)}${single ? ` counted at ${cap.replicas} replicas` : ""} (${cap.claims.map(claimText).join(", ")})`;
  if (nodes === 0) {
    return err("services.longhorn", `no node has a Longhorn disk, and ${requested}`, `give K3s agents a data disk (hosts[].vm.dataDisks) or the storage host a volume at ${spec.storage!.longhornPath}`);
  }
  const disks = cap.disks.map((d) => `${d.host} ${d.sizeGiB === undefined ? "size unknown" : gib(d.sizeGiB)}`).join(", ");
  const can = `Longhorn can place ${gib(cap.placeableGiB)} with ${cap.replicas} ${cap.replicas === 1 ? "replica" : "replicas"} (disks: ${disks}; ${LONGHORN_RESERVED_PERCENT}% of each reserved)`;
  const hint = "give the K3s agents bigger data disks (hosts[].vm.dataDisks), or request less (services.*.size)";
  // with a disk of unknown size the sum is a lower bound: say so, don't refuse
  const report = cap.unknown.length ? warn : err;
  if (cap.requestedGiB > cap.placeableGiB) report("services", `${can}; ${requested}`, hint);
  else if (cap.largestGiB > cap.largestPlaceableGiB) {
    report("services", `a ${gib(cap.largestGiB)} volume needs ${cap.replicas} nodes with that much schedulable space; ${can}, at most ${gib(cap.largestPlaceableGiB)} for one volume`, hint);
  } else if (cap.largestSingleGiB > cap.largestSinglePlaceableGiB) {
    report("services", `a ${gib(cap.largestSingleGiB)} volume needs a node with that much schedulable space; ${can}, at most ${gib(cap.largestSinglePlaceableGiB)} on one node`, hint);
  }
  if (cap.replicas === 1) warn("storage.longhornReplicas", `Longhorn keeps 1 replica of each volume: losing ${nodes === 1 ? cap.disks[0]!.host : "a node"} loses the volumes on it`, "give a second K3s agent a data disk; fmc then uses 2 replicas");
}
