// The cluster's storage arithmetic, from the spec alone: which nodes give Longhorn a disk and
// how big, the replicas per volume, the volumes the in-cluster services ask for, and the
// space Longhorn can place against them. Shared by fmc validate's capacity check and the
// renderers (manifests, Ignition, the storage phase), so what is counted is what is written.
import type { ChartSpec, Host, ServiceName, Spec } from "./schema.js";

/** Whether servers carry SERVER_TAINT: the spec's choice, else on when there are agents to run workloads. */
export function serverTainted(spec: Spec): boolean {
  return spec.k3s.serverTaint ?? spec.hosts.some((h) => h.roles.includes("k3s-agent") && !h.roles.includes("k3s-server"));
}

/** Longhorn's storage-reserved-percentage-for-default-disk: what it never schedules on a disk. */
export const LONGHORN_RESERVED_PERCENT = 30;

const GiB = 1024 ** 3;
/** Bytes of an LVM size with a unit ("20G": LVM's units are binary); undefined for %FREE. */
export function lvmBytes(size: string): number | undefined {
  const m = /^(\d+)([KMGT])$/.exec(size);
  return m ? Number(m[1]) * 1024 ** ("KMGT".indexOf(m[2]!) + 1) : undefined;
}

/** The data disk a VM's virtio device is: /dev/vdb is the first data disk (vda is the root disk). */
function dataDiskOf(host: Host, device: string): { name: string; sizeGiB: number } | undefined {
  const m = /^\/dev\/vd([b-z])$/.exec(device);
  return m ? host.vm?.dataDisks[m[1]!.charCodeAt(0) - "b".charCodeAt(0)] : undefined;
}

export interface LonghornDisk {
  readonly host: string;
  /** storage: the storage host's volume at longhornPath; disk: a K3s agent's first data disk. */
  readonly kind: "volume" | "disk";
  /** The block device fmc formats (disk) or the logical volume (volume). */
  readonly device: string;
  readonly mount: string;
  /** Undefined when the spec does not say (no vm section, or a %FREE volume on an unknown disk). */
  readonly sizeGiB?: number;
}

/**
 * The nodes Longhorn stores replicas on and their disks, from the spec: the storage host's
 * volume mounted at storage.longhornPath (when it runs K3s), and the first data disk of
 * every other K3s agent, formatted and mounted at the same path. Servers keep their disks.
 */
export function longhornDisks(spec: Spec): LonghornDisk[] {
  const st = spec.storage;
  if (!spec.services.longhorn.enabled || !st) return [];
  const out: LonghornDisk[] = [];
  for (const h of spec.hosts) {
    if (!h.roles.includes("k3s-agent") || h.roles.includes("k3s-server")) continue;
    if (h.name === st.host) {
      const v = st.volumes.find((x) => x.mount === st.longhornPath);
      if (!v) continue;
      let size = lvmBytes(v.size);
      if (size === undefined) {
        const disk = dataDiskOf(h, st.device);
        const pct = Number(v.size.replace("%FREE", ""));
        const fixed = st.volumes.filter((x) => x !== v).map((x) => lvmBytes(x.size) ?? 0);
        if (disk) size = Math.max(0, disk.sizeGiB * GiB - fixed.reduce((a, b) => a + b, 0)) * (pct / 100);
      }
      out.push({ host: h.name, kind: "volume", device: `/dev/${st.volumeGroup}/${v.name}`, mount: st.longhornPath, sizeGiB: size === undefined ? undefined : size / GiB });
    } else if (h.vm?.dataDisks.length) {
      out.push({ host: h.name, kind: "disk", device: "/dev/vdb", mount: st.longhornPath, sizeGiB: h.vm.dataDisks[0]!.sizeGiB });
    }
  }
  return out;
}

/** Longhorn replicas per volume: the spec's, else 2 when two nodes have disks (one may fail), else 1. */
export function longhornReplicas(spec: Spec): number {
  return spec.storage?.longhornReplicas ?? (longhornDisks(spec).length >= 2 ? 2 : 1);
}

/** What Longhorn schedules on a disk: all of it but the reserved share (over-provisioning stays at its 100%). */
const schedulableGiB = (sizeGiB: number) => (sizeGiB * (100 - LONGHORN_RESERVED_PERCENT)) / 100;

/**
 * The most volume space (GiB) Longhorn can place with `replicas` copies of each volume on
 * different nodes, given each node's schedulable GiB: the largest T with
 * sum(min(cap, T)) >= replicas × T (no node holds two copies of one volume).
 */
export function placeableGiB(caps: readonly number[], replicas: number): number {
  if (replicas <= 0) return 0;
  let lo = 0;
  let hi = caps.reduce((a, b) => a + b, 0) / replicas;
  for (let i = 0; i < 60; i++) {
    const t = (lo + hi) / 2;
    if (caps.reduce((a, c) => a + Math.min(c, t), 0) >= replicas * t) lo = t;
    else hi = t;
  }
  return lo;
}

// Pods with a volume each, shared by the rendered resources and Longhorn's capacity check.
export const ALERTMANAGER_SIZE = "2Gi";
/** redis-ha: three pods, each Redis with a Sentinel beside it (Sentinel's quorum of 2 needs three). */
export const REDIS_PODS = 3;
/** Strimzi: one KRaft node pool of three nodes, each a controller and a broker. */
export const KAFKA_NODES = 3;
/** Volume sizes when the spec gives none: written into the resources, so what Longhorn is asked for is what was counted. */
export const DEFAULT_SIZE = { prometheus: "20Gi", grafana: "5Gi", elasticsearch: "30Gi", redis: "8Gi", kafka: "8Gi" } as const;

/** One Elasticsearch node per ingress backend (agents that are not the storage host), at most 3. */
export function elasticsearchReplicas(spec: Spec): number {
  const backends = spec.hosts.filter((h) => h.roles.includes("k3s-agent") && !h.roles.includes("k3s-server") && !h.roles.includes("storage"));
  return Math.min(3, Math.max(1, backends.length));
}

/** Nodes that take ordinary workloads: agents other than the (tainted) storage host, and servers when they are not tainted. */
export function workloadNodes(spec: Spec): number {
  const tainted = serverTainted(spec);
  return spec.hosts.filter((h) => (h.roles.includes("k3s-agent") && !h.roles.includes("storage")) || (h.roles.includes("k3s-server") && !tainted)).length;
}

export interface VolumeClaim {
  readonly service: ServiceName;
  /** The pods' volumes: "elasticsearch data", "redis master"… */
  readonly what: string;
  readonly count: number;
  readonly sizeGiB: number;
  /** Longhorn copies of each volume: 1 on the single-replica class (the service copies itself), else the cluster's. */
  readonly replicas: number;
}

/**
 * Whether a service that keeps `copies` copies of its data itself (Elasticsearch's replica
 * shards, Kafka's replication, redis-ha's replicas) goes on Longhorn's 1-replica class: with
 * two or more, Longhorn's own replicas would multiply each copy again. The renderer picks the
 * class by this, and the capacity check counts its volumes once.
 */
export const selfReplicating = (spec: Spec, storageClass: string | undefined, copies: number) => storageClass === "longhorn" && spec.services.longhorn.enabled && copies >= 2;

const gib = (q: string) => {
  const m = /^(\d+)(Mi|Gi|Ti)$/.exec(q)!;
  return Number(m[1]) * { Mi: 1 / 1024, Gi: 1, Ti: 1024 }[m[2] as "Mi" | "Gi" | "Ti"];
};

/**
 * The Longhorn volumes the enabled services request: fmc's own claims (Prometheus,
 * Grafana) and the per-pod claims of the charts and operators (Elasticsearch, Redis,
 * Kafka, Alertmanager). A service without a storageClass uses the default class, which is
 * Longhorn's when it is enabled. Sizes left unset are DEFAULT_SIZE (Alertmanager: fmc's).
 */
export function longhornClaims(spec: Spec): VolumeClaim[] {
  const svc = spec.services;
  const onLonghorn = (c: ChartSpec) => c.enabled && svc.longhorn.enabled && (c.storageClass ?? "longhorn") === "longhorn";
  const out: VolumeClaim[] = [];
  const replicas = longhornReplicas(spec);
  const add = (service: ServiceName, what: string, count: number, size: string, copiesItself = false) =>
    out.push({ service, what, count, sizeGiB: gib(size), replicas: copiesItself && selfReplicating(spec, "longhorn", count) ? 1 : replicas });
  if (svc.prometheus.enabled && svc.prometheus.storageClass === "longhorn") add("prometheus", "Prometheus server", 1, svc.prometheus.size ?? DEFAULT_SIZE.prometheus);
  if (onLonghorn(svc.prometheus)) add("prometheus", "Alertmanager", 1, ALERTMANAGER_SIZE);
  if (svc.grafana.enabled && svc.grafana.storageClass === "longhorn") add("grafana", "Grafana", 1, svc.grafana.size ?? DEFAULT_SIZE.grafana);
  if (onLonghorn(svc.elasticsearch)) add("elasticsearch", "Elasticsearch nodes", elasticsearchReplicas(spec), svc.elasticsearch.size ?? DEFAULT_SIZE.elasticsearch, true);
  if (onLonghorn(svc.redis)) add("redis", "Redis master and replicas", REDIS_PODS, svc.redis.size ?? DEFAULT_SIZE.redis, true);
  if (onLonghorn(svc.kafka)) add("kafka", "Kafka controllers", KAFKA_NODES, svc.kafka.size ?? DEFAULT_SIZE.kafka, true);
  return out;
}

export interface LonghornCapacity {
  readonly disks: readonly LonghornDisk[];
  readonly replicas: number;
  /** Disks whose size the spec does not give: not counted. */
  readonly unknown: readonly LonghornDisk[];
  /** Volume space Longhorn can place with `replicas` copies on different nodes. */
  readonly placeableGiB: number;
  readonly claims: readonly VolumeClaim[];
  /** What the claims take, counted as volumes of `replicas` copies (a 1-replica volume counts 1/replicas). */
  readonly requestedGiB: number;
  /** The largest single volume, and the most one volume can be (its copies each on another node). */
  readonly largestGiB: number;
  readonly largestPlaceableGiB: number;
  /** The largest 1-replica volume, and the most one node can hold. */
  readonly largestSingleGiB: number;
  readonly largestSinglePlaceableGiB: number;
}

/** Longhorn's schedulable space against what the charts request, with replicas. */
export function longhornCapacity(spec: Spec): LonghornCapacity {
  const disks = longhornDisks(spec);
  const replicas = longhornReplicas(spec);
  const known = disks.filter((d) => d.sizeGiB !== undefined);
  const caps = known.map((d) => schedulableGiB(d.sizeGiB!)).sort((a, b) => b - a);
  const claims = longhornClaims(spec);
  return {
    disks,
    replicas,
    unknown: disks.filter((d) => d.sizeGiB === undefined),
    placeableGiB: placeableGiB(caps, replicas),
    claims,
    // copies on disk, in volumes of `replicas` copies: a 1-replica volume's copy fits
    // wherever there is room, so it weighs 1/replicas of a replicated one
    requestedGiB: claims.reduce((a, c) => a + (c.count * c.sizeGiB * c.replicas) / replicas, 0),
    // the largest volume against the nodes its copies need: `replicas` of them (one for a 1-replica volume)
    largestGiB: Math.max(0, ...claims.filter((c) => c.replicas === replicas).map((c) => c.sizeGiB)),
    largestPlaceableGiB: caps[replicas - 1] ?? 0,
    largestSingleGiB: Math.max(0, ...claims.filter((c) => c.replicas === 1).map((c) => c.sizeGiB)),
    largestSinglePlaceableGiB: caps[0] ?? 0,
  };
}
