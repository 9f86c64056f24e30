// The volumes the in-cluster services ask for, and Longhorn's schedulable space against them:
// shared by the manifests (src/render/kubernetes.ts writes these sizes into the resources) and
// fmc validate's capacity check, which must not load the Kubernetes object models to count.
import type { ChartSpec, ServiceName, Spec } from "../model/schema.js";
import { serverTainted } from "./k3s.js";
import { longhornDisks, longhornReplicas, placeableGiB, schedulableGiB, type LonghornDisk } from "./storage.js";

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
}

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
  const add = (service: ServiceName, what: string, count: number, size: string) => out.push({ service, what, count, sizeGiB: gib(size) });
  if (svc.prometheus.enabled && svc.prometheus.storageClass === "longhorn") add("prometheus", "Prometheus server", 1, svc.prometheus.size ?? DEFAULT_SIZE.prometheus);
  if (onLonghorn(svc.prometheus)) add("prometheus", "Alertmanager", 1, ALERTMANAGER_SIZE);
  if (svc.grafana.enabled && svc.grafana.storageClass === "longhorn") add("grafana", "Grafana", 1, svc.grafana.size ?? DEFAULT_SIZE.grafana);
  if (onLonghorn(svc.elasticsearch)) add("elasticsearch", "Elasticsearch nodes", elasticsearchReplicas(spec), svc.elasticsearch.size ?? DEFAULT_SIZE.elasticsearch);
  if (onLonghorn(svc.redis)) add("redis", "Redis master and replicas", REDIS_PODS, svc.redis.size ?? DEFAULT_SIZE.redis);
  if (onLonghorn(svc.kafka)) add("kafka", "Kafka controllers", KAFKA_NODES, svc.kafka.size ?? DEFAULT_SIZE.kafka);
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
  readonly requestedGiB: number;
  /** The largest single volume, and the most one volume can be (its copies each on another node). */
  readonly largestGiB: number;
  readonly largestPlaceableGiB: number;
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
    requestedGiB: claims.reduce((a, c) => a + c.count * c.sizeGiB, 0),
    largestGiB: Math.max(0, ...claims.map((c) => c.sizeGiB)),
    largestPlaceableGiB: caps[replicas - 1] ?? 0,
  };
}
