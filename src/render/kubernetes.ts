// Kubernetes manifests that K3s applies from /var/lib/rancher/k3s/server/manifests:
// namespaces, the NFS RWX StorageClass, secrets from the secret store, PVCs, and one
// HelmChart (helm.cattle.io/v1) per in-cluster service. Built-in kinds are built with
// kubernetes-models so their shape is checked against the Kubernetes OpenAPI schema.
import { stringify } from "yaml";
import { Namespace, PersistentVolumeClaim, Secret } from "kubernetes-models/v1";
import { StorageClass } from "kubernetes-models/storage.k8s.io/v1";
import type { ChartSpec, ServiceName, Spec } from "../spec/schema.js";
import type { Artifact, RenderContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";
import { SERVER_TAINT, serverTainted, STORAGE_TAINT } from "./k3s.js";
import { staticScrapeJobs } from "./prometheus.js";
import { LONGHORN_RESERVED_PERCENT, longhornDisks, longhornReplicas, placeableGiB, schedulableGiB, type LonghornDisk } from "./storage.js";

export const NFS_STORAGE_CLASS = "nfs-shared";

/** A K3s HelmChart resource; a CRD, so typed here rather than by kubernetes-models. */
export interface HelmChart {
  apiVersion: "helm.cattle.io/v1";
  kind: "HelmChart";
  metadata: { name: string; namespace: "kube-system" };
  spec: { chart: string; repo?: string; version: string; targetNamespace: string; createNamespace: boolean; valuesContent: string };
}

export interface Manifest {
  readonly file: string;
  readonly objects: ReadonlyArray<{ toJSON?: () => unknown } | HelmChart>;
  readonly secret?: boolean;
}

function helmChart(name: string, c: ChartSpec, values: Record<string, unknown>): HelmChart {
  const oci = c.repo.startsWith("oci://");
  return {
    apiVersion: "helm.cattle.io/v1",
    kind: "HelmChart",
    metadata: { name, namespace: "kube-system" },
    spec: {
      chart: oci ? `${c.repo}/${c.chart}` : c.chart,
      ...(oci ? {} : { repo: c.repo }),
      version: c.version,
      targetNamespace: c.namespace,
      createNamespace: true,
      valuesContent: stringify(values),
    },
  };
}

const tolerationOf = (taint: string) => {
  const [kv, effect] = taint.split(":");
  const [key, value] = kv!.split("=");
  return { key: key!, operator: "Equal", value: value!, effect: effect! };
};
const toleration = tolerationOf(STORAGE_TAINT);
/** Node agents (DaemonSets) that belong on every node, the tainted servers and storage node too. */
const everyNode = (spec: Spec) => [toleration, ...(serverTainted(spec) ? [tolerationOf(SERVER_TAINT)] : [])];

/** The sentinel Flatcar's update_engine leaves after applying an update (releases after 3067.0.0). */
export const REBOOT_SENTINEL = "/run/reboot-required";

/**
 * kured (kubereboot/charts charts/kured, values.yaml at commit 892721751add): one node at a
 * time (concurrency 1), cordoned and drained before its reboot and uncordoned after, when
 * REBOOT_SENTINEL exists on the node. The sentinel's directory is mounted from the host.
 */
export function kuredChart(spec: Spec): HelmChart {
  const r = spec.k3s.reboots;
  const configuration: Record<string, unknown> = {
    useRebootSentinelHostPath: true,
    rebootSentinel: REBOOT_SENTINEL,
    rebootCommand: "/bin/systemctl reboot",
    concurrency: 1,
    period: "1h",
    forceReboot: false,
  };
  if (r.window) Object.assign(configuration, { startTime: r.window.start, endTime: r.window.end, timeZone: r.window.timeZone });
  return helmChart("kured", { enabled: true, repo: r.repo, chart: "kured", version: r.version, namespace: "kube-system" }, { configuration, tolerations: everyNode(spec) });
}

function pvc(name: string, namespace: string, storageClass: string, size: string, mode: "ReadWriteOnce" | "ReadWriteMany") {
  return new PersistentVolumeClaim({
    metadata: { name, namespace, labels: { "app.kubernetes.io/managed-by": "fmc" } },
    spec: { accessModes: [mode], storageClassName: storageClass, resources: { requests: { storage: size } } },
  });
}

// Pods with a volume each, shared by the chart values and Longhorn's capacity check.
const ALERTMANAGER_SIZE = "2Gi";
const REDIS_REPLICAS = 2;
const KAFKA_CONTROLLERS = 3;
/** One Elasticsearch node per ingress backend (agents that are not the storage host), at most 3. */
function elasticsearchReplicas(spec: Spec): number {
  const backends = spec.hosts.filter((h) => h.roles.includes("k3s-agent") && !h.roles.includes("k3s-server") && !h.roles.includes("storage"));
  return Math.min(3, Math.max(1, backends.length));
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
 * The Longhorn volumes the enabled charts request: fmc's own claims (Prometheus, Grafana)
 * and the charts' per-pod claims (Elasticsearch, Redis, Kafka, Alertmanager). A chart
 * without a storageClass uses the default class, which is Longhorn's when it is enabled.
 * Sizes left unset are the charts' own defaults.
 */
export function longhornClaims(spec: Spec): VolumeClaim[] {
  const svc = spec.services;
  const onLonghorn = (c: ChartSpec) => c.enabled && svc.longhorn.enabled && (c.storageClass ?? "longhorn") === "longhorn";
  const out: VolumeClaim[] = [];
  const add = (service: ServiceName, what: string, count: number, size: string) => out.push({ service, what, count, sizeGiB: gib(size) });
  if (svc.prometheus.enabled && svc.prometheus.storageClass === "longhorn") add("prometheus", "Prometheus server", 1, svc.prometheus.size ?? "20Gi");
  if (onLonghorn(svc.prometheus)) add("prometheus", "Alertmanager", 1, ALERTMANAGER_SIZE);
  if (svc.grafana.enabled && svc.grafana.storageClass === "longhorn") add("grafana", "Grafana", 1, svc.grafana.size ?? "5Gi");
  if (onLonghorn(svc.elasticsearch)) add("elasticsearch", "Elasticsearch nodes", elasticsearchReplicas(spec), svc.elasticsearch.size ?? "30Gi");
  if (onLonghorn(svc.redis)) add("redis", "Redis master and replicas", 1 + REDIS_REPLICAS, svc.redis.size ?? "8Gi");
  if (onLonghorn(svc.kafka)) add("kafka", "Kafka controllers", KAFKA_CONTROLLERS, svc.kafka.size ?? "8Gi");
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

function chartValues(ctx: RenderContext, svc: ServiceName): Record<string, unknown> {
  const { spec } = ctx;
  const c = spec.services[svc];
  const host = (name: string) => `${name}.${spec.domain}`;
  const ingress = (name: string) => ({ enabled: true, ingressClassName: "nginx", hosts: [host(name)] });
  const persistence = { storageClass: c.storageClass, size: c.size };
  switch (svc) {
    case "longhorn":
      return {
        defaultSettings: {
          // every labelled node's disk is mounted here (storage host: its volume; agents: their data disk)
          defaultDataPath: spec.storage?.longhornPath,
          createDefaultDiskLabeledNodes: true,
          defaultReplicaCount: longhornReplicas(spec),
          // fmc validate computes capacity with these: say them rather than rely on the chart's defaults
          storageReservedPercentageForDefaultDisk: LONGHORN_RESERVED_PERCENT,
          storageOverProvisioningPercentage: 100,
          replicaSoftAntiAffinity: false,
          taintToleration: STORAGE_TAINT,
        },
        persistence: { defaultClass: true, defaultClassReplicaCount: longhornReplicas(spec) },
        longhornManager: { tolerations: [toleration] },
        longhornDriver: { tolerations: [toleration] },
      };
    case "nfsCsi":
      return { controller: { replicas: 1 } };
    case "ingressNginx":
      return {
        controller: {
          kind: "DaemonSet",
          service: { type: "NodePort", nodePorts: { http: spec.k3s.ingressNodePorts.http, https: spec.k3s.ingressNodePorts.https } },
          ingressClassResource: { default: true },
          config: { "use-forwarded-headers": "true" },
        },
      };
    case "prometheus":
      return {
        server: { persistentVolume: { enabled: true, existingClaim: "prometheus-server" }, retention: "15d" },
        alertmanager: { persistence: { storageClass: c.storageClass, size: ALERTMANAGER_SIZE } },
        extraScrapeConfigs: stringify(staticScrapeJobs(ctx)),
      };
    case "grafana":
      return {
        admin: { existingSecret: "grafana-admin", userKey: "admin-user", passwordKey: "admin-password" },
        persistence: { enabled: true, existingClaim: "grafana" },
        ingress: ingress("grafana"),
        datasources: {
          "datasources.yaml": {
            apiVersion: 1,
            datasources: [{ name: "Prometheus", type: "prometheus", url: `http://prometheus-server.${spec.services.prometheus.namespace}.svc`, isDefault: true }],
          },
        },
      };
    case "elasticsearch":
      return {
        replicas: elasticsearchReplicas(spec),
        minimumMasterNodes: Math.floor(elasticsearchReplicas(spec) / 2) + 1,
        secret: { enabled: true, password: ctx.secrets.get("elastic") },
        volumeClaimTemplate: { accessModes: ["ReadWriteOnce"], storageClassName: c.storageClass, resources: { requests: { storage: c.size } } },
      };
    case "kibana":
      return { elasticsearchHosts: `https://elasticsearch-master.${spec.services.elasticsearch.namespace}.svc:9200`, ingress: { ...ingress("kibana"), hosts: [{ host: host("kibana"), paths: [{ path: "/" }] }] } };
    case "fluentBit":
      return {
        tolerations: everyNode(spec),
        env: [{ name: "ELASTIC_PASSWORD", valueFrom: { secretKeyRef: { name: "elasticsearch-master-credentials", key: "password" } } }],
        extraVolumes: [{ name: "es-certs", secret: { secretName: "elasticsearch-master-certs" } }],
        extraVolumeMounts: [{ name: "es-certs", mountPath: "/certs", readOnly: true }],
        config: {
          outputs: [
            "[OUTPUT]",
            "    Name es",
            "    Match kube.*",
            `    Host elasticsearch-master.${spec.services.elasticsearch.namespace}.svc`,
            "    Port 9200",
            "    HTTP_User elastic",
            "    HTTP_Passwd ${ELASTIC_PASSWORD}",
            "    Logstash_Format On",
            "    Suppress_Type_Name On",
            "    tls On",
            "    tls.verify On",
            "    tls.ca_file /certs/ca.crt",
            "",
          ].join("\n"),
        },
      };
    case "redis":
      return {
        architecture: "replication",
        auth: { enabled: true, existingSecret: "redis-auth", existingSecretPasswordKey: "password" },
        master: { persistence },
        replica: { replicaCount: REDIS_REPLICAS, persistence },
      };
    case "kafka":
      return { controller: { replicaCount: KAFKA_CONTROLLERS, persistence }, broker: { persistence } };
  }
}

export function manifests(ctx: RenderContext): Manifest[] {
  const { spec, topo } = ctx;
  const svc = spec.services;
  const enabled = (Object.keys(svc) as ServiceName[]).filter((s) => svc[s].enabled);
  const out: Manifest[] = [];
  const namespaces = [...new Set(enabled.map((s) => svc[s].namespace))].filter((n) => n !== "kube-system").sort();
  out.push({
    file: "00-namespaces.yaml",
    objects: namespaces.map((n) => new Namespace({ metadata: { name: n, labels: { "app.kubernetes.io/managed-by": "fmc" } } })),
  });
  if (svc.nfsCsi.enabled && spec.storage) {
    out.push({
      file: "10-storageclass-nfs-shared.yaml",
      objects: [
        new StorageClass({
          metadata: { name: NFS_STORAGE_CLASS },
          provisioner: "nfs.csi.k8s.io",
          parameters: { server: topo.host(spec.storage.host).address, share: spec.storage.sharedExport },
          reclaimPolicy: "Retain",
          volumeBindingMode: "Immediate",
          allowVolumeExpansion: true,
          mountOptions: ["nfsvers=4.1", "hard"],
        }),
      ],
    });
    out.push({ file: "20-pvc-shared-data.yaml", objects: [pvc("shared-data", "default", NFS_STORAGE_CLASS, "10Gi", "ReadWriteMany")] });
  }
  const secrets: Secret[] = [];
  if (svc.grafana.enabled) {
    secrets.push(new Secret({ metadata: { name: "grafana-admin", namespace: svc.grafana.namespace }, type: "Opaque", stringData: { "admin-user": "admin", "admin-password": ctx.secrets.get("grafana-admin") } }));
  }
  if (svc.redis.enabled) {
    secrets.push(new Secret({ metadata: { name: "redis-auth", namespace: svc.redis.namespace }, type: "Opaque", stringData: { password: ctx.secrets.get("redis") } }));
  }
  if (secrets.length) out.push({ file: "30-secrets.yaml", objects: secrets, secret: true });
  const claims: PersistentVolumeClaim[] = [];
  if (svc.prometheus.enabled && svc.prometheus.storageClass) claims.push(pvc("prometheus-server", svc.prometheus.namespace, svc.prometheus.storageClass, svc.prometheus.size ?? "20Gi", "ReadWriteOnce"));
  if (svc.grafana.enabled && svc.grafana.storageClass) claims.push(pvc("grafana", svc.grafana.namespace, svc.grafana.storageClass, svc.grafana.size ?? "5Gi", "ReadWriteOnce"));
  if (claims.length) out.push({ file: "40-pvcs.yaml", objects: claims });
  for (const s of enabled) {
    const c = svc[s];
    out.push({
      file: `50-helmchart-${c.chart}.yaml`,
      objects: [helmChart(c.chart, c, chartValues(ctx, s))],
      secret: s === "elasticsearch",
    });
  }
  if (spec.k3s.reboots.coordinator === "kured") out.push({ file: "60-helmchart-kured.yaml", objects: [kuredChart(spec)] });
  return out;
}

export function toYamlDocuments(objects: Manifest["objects"]): string {
  return objects.map((o) => stringify("toJSON" in o && typeof o.toJSON === "function" ? o.toJSON() : o)).join("---\n");
}

export function renderKubernetes(ctx: RenderContext): Artifact[] {
  const head = `# ${HEADER_TEXT}\n`;
  return manifests(ctx)
    .filter((m) => m.objects.length > 0)
    .map((m) => ({ path: `kubernetes/${m.file}`, content: head + toYamlDocuments(m.objects), secret: m.secret }));
}
