// Kubernetes manifests that K3s applies from /var/lib/rancher/k3s/server/manifests:
// namespaces, the NFS RWX StorageClass, secrets from the secret store, PVCs, one
// HelmChart (helm.cattle.io/v1) per chart-installed service, the HelmChartConfig and the
// NodePort Service of K3s's packaged Traefik (the ingress), and the resources the
// operators run (ECK's Elasticsearch and Kibana, Strimzi's Kafka). Built-in kinds are
// built with kubernetes-models so their shape is checked against the Kubernetes OpenAPI
// schema; the custom resources are checked against their CRDs in the tests.
//
// K3s applies the files in name order and retries a file that fails every 15 seconds
// (k3s-io/k3s pkg/deploy/controller.go), so the custom resources sit in files of their
// own (70-*) that apply once the operator's chart has installed its CRDs.
import { stringify } from "yaml";
import { Namespace, PersistentVolumeClaim, Secret, Service } from "kubernetes-models/v1";
import { Ingress } from "kubernetes-models/networking.k8s.io/v1";
import { StorageClass } from "kubernetes-models/storage.k8s.io/v1";
import type { ChartSpec, ServiceName, Spec } from "../model/schema.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";
import { SERVER_TAINT, STORAGE_LABEL, STORAGE_TAINT } from "./k3s.js";
import { staticScrapeJobs } from "./prometheus.js";
import { ALERTMANAGER_SIZE, DEFAULT_SIZE, elasticsearchReplicas, KAFKA_NODES, LONGHORN_RESERVED_PERCENT, longhornReplicas, REDIS_PODS, selfReplicating, serverTainted, workloadNodes } from "../model/capacity.js";


export const NFS_STORAGE_CLASS = "nfs-shared";
/**
 * Longhorn with one replica, for services that keep their own copies on other nodes
 * (Elasticsearch's replica shards, Kafka's replication factor 3, redis-ha's replicas):
 * Longhorn's default replicas would multiply each of their copies again. The replica stays
 * on the pod's node where it can (dataLocality best-effort, Longhorn's StorageClass parameters).
 */
const LONGHORN_SINGLE_CLASS = "longhorn-single";
/** The class of a service that keeps `copies` copies itself: the 1-replica Longhorn class when it has two or more and the spec puts it on Longhorn. */
const selfReplicatingClass = (spec: Spec, storageClass: string | undefined, copies: number) => (selfReplicating(spec, storageClass, copies) ? LONGHORN_SINGLE_CLASS : storageClass);
/** The IngressClass K3s's Traefik chart creates (ingressClass.name defaults to the release name, traefik). */
const INGRESS_CLASS = "traefik";
/** Names of the operator-run resources; ECK and Strimzi derive Services and Secrets from them. */
const ELASTICSEARCH = "elasticsearch";
const KIBANA = "kibana";
const KAFKA = "kafka";
const KAFKA_POOL = "kraft";
/** ECK's Services and Secrets of those (cloud-on-k8s pkg/apis/{elasticsearch,kibana}/v1/name.go and pkg/controller/common/certificates/secret.go). */
const ES_HTTP_SERVICE = `${ELASTICSEARCH}-es-http`;
const ES_CA_SECRET = `${ELASTICSEARCH}-es-http-certs-public`;
const KIBANA_SERVICE = `${KIBANA}-kb-http`;
const KIBANA_PORT = 5601;
/** The elastic user's credentials: a file-realm user ECK reads (spec.auth.fileRealm), so the password is the secret store's. */
const ELASTIC_USER_SECRET = "elasticsearch-elastic-user-fmc";

const MANAGED = { "app.kubernetes.io/managed-by": "fmc" };

/** A K3s HelmChart resource; a CRD (k3s-io/helm-controller), so typed here rather than by kubernetes-models. */
export interface HelmChart {
  apiVersion: "helm.cattle.io/v1";
  kind: "HelmChart";
  metadata: { name: string; namespace: "kube-system" };
  spec: { chart: string; repo?: string; version: string; targetNamespace: string; createNamespace: boolean; valuesContent: string };
}

/** Values for a chart K3s installs itself (its packaged Traefik), merged over K3s's own. */
export interface HelmChartConfig {
  apiVersion: "helm.cattle.io/v1";
  kind: "HelmChartConfig";
  metadata: { name: string; namespace: "kube-system" };
  spec: { valuesContent: string };
}

/** A custom resource an operator runs (Elasticsearch, Kibana, Kafka, KafkaNodePool). */
export interface CustomResource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}

export interface Manifest {
  readonly file: string;
  readonly objects: ReadonlyArray<{ toJSON?: () => unknown } | HelmChart | HelmChartConfig | CustomResource>;
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
      valuesContent: stringify(values, { aliasDuplicateObjects: false }),
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
const REBOOT_SENTINEL = "/run/reboot-required";

/**
 * kured (kubereboot/charts charts/kured, values.yaml at commit 892721751add): one node at a
 * time (concurrency 1), cordoned and drained before its reboot and uncordoned after, when
 * REBOOT_SENTINEL exists on the node. The sentinel's directory is mounted from the host.
 */
function kuredChart(spec: Spec): HelmChart {
  const r = spec.k3s.reboots;
  // The storage host is never rebooted by kured: its NFS exports (PostgreSQL's data, the
  // shared RWX class) serve clients a drain does not move. kured does not run there at all
  // (no storage toleration, and a node affinity on the storage label, so a node that lost
  // its taint stays excluded); its updates wait for a reboot the operator plans. A
  // blocking-pod selector or the lock annotation would hold every node's reboot, not this one's.
  const notStorage = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: STORAGE_LABEL, operator: "DoesNotExist" }] }] } } };
  const configuration: Record<string, unknown> = {
    useRebootSentinelHostPath: true,
    rebootSentinel: REBOOT_SENTINEL,
    rebootCommand: "/bin/systemctl reboot",
    concurrency: 1,
    period: "1h",
    forceReboot: false,
  };
  // kured's --reboot-days/--start-time/--end-time/--time-zone (the chart's configuration.rebootDays, startTime, endTime, timeZone)
  if (r.window) Object.assign(configuration, { ...(r.window.days ? { rebootDays: [...r.window.days] } : {}), startTime: r.window.start, endTime: r.window.end, timeZone: r.window.timeZone });
  const tolerations = serverTainted(spec) ? [tolerationOf(SERVER_TAINT)] : [];
  return helmChart("kured", { enabled: true, repo: r.repo, chart: "kured", version: r.version, namespace: "kube-system" }, { configuration, tolerations, affinity: notStorage });
}

function pvc(name: string, namespace: string, storageClass: string, size: string, mode: "ReadWriteOnce" | "ReadWriteMany") {
  return new PersistentVolumeClaim({
    metadata: { name, namespace, labels: { "app.kubernetes.io/managed-by": "fmc" } },
    spec: { accessModes: [mode], storageClassName: storageClass, resources: { requests: { storage: size } } },
  });
}

const host = (spec: Spec, name: string) => `${name}.${spec.domain}`;

/**
 * Values of each chart-installed service, for the pinned chart version in the spec
 * (checked against the chart's published values.schema.json or its keys in the tests:
 * test/fixtures/charts). Passwords never appear here: charts read them from Secrets.
 */
export function chartValues(ctx: ClusterContext, svc: Exclude<ServiceName, "ingress" | "kibana">): Record<string, unknown> {
  const { spec } = ctx;
  const c = spec.services[svc];
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
    case "prometheus":
      return {
        server: { persistentVolume: { enabled: true, existingClaim: "prometheus-server" }, retention: "15d" },
        alertmanager: { persistence: { storageClass: c.storageClass, size: ALERTMANAGER_SIZE } },
        // node-exporter on every node, the tainted servers too (the subchart's default tolerates NoSchedule taints only)
        "prometheus-node-exporter": { tolerations: [{ effect: "NoSchedule", operator: "Exists" }, ...(serverTainted(spec) ? [tolerationOf(SERVER_TAINT)] : [])] },
        extraScrapeConfigs: stringify(staticScrapeJobs(ctx)),
      };
    case "grafana":
      return {
        admin: { existingSecret: "grafana-admin", userKey: "admin-user", passwordKey: "admin-password" },
        persistence: { enabled: true, existingClaim: "grafana" },
        // its volume is ReadWriteOnce: a rolling update's new pod could not attach it while the old one runs
        deploymentStrategy: { type: "Recreate" },
        ingress: { enabled: true, ingressClassName: INGRESS_CLASS, hosts: [host(spec, "grafana")] },
        datasources: {
          "datasources.yaml": {
            apiVersion: 1,
            datasources: [{ name: "Prometheus", type: "prometheus", url: `http://prometheus-server.${spec.services.prometheus.namespace}.svc`, isDefault: true }],
          },
        },
      };
    case "elasticsearch":
      // the operator: only its namespace's resources are its to manage; CRDs come with the chart (installCRDs)
      return { installCRDs: true, managedNamespaces: [c.namespace] };
    case "fluentBit": {
      const es = spec.services.elasticsearch;
      return {
        tolerations: everyNode(spec),
        env: [
          { name: "ELASTIC_USER", valueFrom: { secretKeyRef: { name: ELASTIC_USER_SECRET, key: "username" } } },
          { name: "ELASTIC_PASSWORD", valueFrom: { secretKeyRef: { name: ELASTIC_USER_SECRET, key: "password" } } },
        ],
        // ECK's CA for the HTTP layer; ECK renews the certificates before they expire
        extraVolumes: [{ name: "es-ca", secret: { secretName: ES_CA_SECRET, items: [{ key: "ca.crt", path: "ca.crt" }] } }],
        extraVolumeMounts: [{ name: "es-ca", mountPath: "/certs", readOnly: true }],
        config: {
          outputs: [
            "[OUTPUT]",
            "    Name es",
            "    Match kube.*",
            `    Host ${ES_HTTP_SERVICE}.${es.namespace}.svc`,
            "    Port 9200",
            "    HTTP_User ${ELASTIC_USER}",
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
    }
    case "redis":
      return {
        replicas: REDIS_PODS,
        // one pod per node where there are three nodes for them; fewer nodes share (failover then covers a pod, not a node)
        hardAntiAffinity: workloadNodes(spec) >= REDIS_PODS,
        auth: true,
        existingSecret: "redis-auth",
        authKey: "password",
        sentinel: { auth: true, existingSecret: "redis-auth", authKey: "password" },
        persistentVolume: { enabled: true, storageClass: selfReplicatingClass(spec, c.storageClass, REDIS_PODS), size: c.size ?? DEFAULT_SIZE.redis },
      };
    case "kafka":
      // the operator watches its own namespace, where the Kafka resources are
      return { watchAnyNamespace: false };
  }
}

/**
 * K3s's packaged Traefik, behind HAProxy: a DaemonSet trusting X-Forwarded-* only from the
 * load balancers. The chart's own Service is off: its values changed shape in chart 40
 * (service.type became service.spec.type), and which chart a node runs depends on the
 * K3s release, so the NodePorts come from fmc's own Service (traefikNodePorts).
 */
function traefikValues(ctx: ClusterContext): Record<string, unknown> {
  const lbs = ctx.topo.withRole("loadbalancer").map((h) => `${h.address}/32`);
  const forwarded = lbs.length ? { forwardedHeaders: { trustedIPs: lbs } } : {};
  return {
    deployment: { kind: "DaemonSet" },
    service: { enabled: false },
    // no Service of the chart to copy an address from into the Ingresses' status
    providers: { kubernetesIngress: { publishedService: { enabled: false } } },
    ports: { web: { ...forwarded }, websecure: { ...forwarded } },
    ingressClass: { enabled: true, isDefaultClass: true },
  };
}

/** The pods of K3s's Traefik: the chart's selector labels (immutable, traefik.labelselector) for release traefik in kube-system. */
const TRAEFIK_SELECTOR = { "app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-kube-system" };

/**
 * The NodePorts HAProxy forwards 80/443 to, onto Traefik's web and websecure container
 * ports. Local: a node answers only with its own Traefik pod, so HAProxy's health check
 * sees that pod, and no second hop hides the load balancer's address.
 */
function traefikNodePorts(spec: Spec): Service {
  const np = spec.k3s.ingressNodePorts;
  return new Service({
    metadata: { name: "traefik-nodeports", namespace: "kube-system", labels: MANAGED },
    spec: {
      type: "NodePort",
      externalTrafficPolicy: "Local",
      selector: TRAEFIK_SELECTOR,
      ports: [
        { name: "web", protocol: "TCP", port: 80, targetPort: "web", nodePort: np.http },
        { name: "websecure", protocol: "TCP", port: 443, targetPort: "websecure", nodePort: np.https },
      ],
    },
  });
}

function helmChartConfig(name: string, values: Record<string, unknown>): HelmChartConfig {
  return { apiVersion: "helm.cattle.io/v1", kind: "HelmChartConfig", metadata: { name, namespace: "kube-system" }, spec: { valuesContent: stringify(values, { aliasDuplicateObjects: false }) } };
}

/** ECK's Elasticsearch (and Kibana beside it): TLS by ECK (renewed before expiry), the elastic user from a Secret. */
function elasticResources(spec: Spec): CustomResource[] {
  const es = spec.services.elasticsearch;
  const ns = es.namespace;
  const out: CustomResource[] = [
    {
      apiVersion: "elasticsearch.k8s.elastic.co/v1",
      kind: "Elasticsearch",
      metadata: { name: ELASTICSEARCH, namespace: ns, labels: MANAGED },
      spec: {
        version: es.stackVersion,
        auth: { fileRealm: [{ secretName: ELASTIC_USER_SECRET }] },
        nodeSets: [
          {
            name: "default",
            count: elasticsearchReplicas(spec),
            // no vm.max_map_count raise on the nodes: Elasticsearch does without mmap (ECK's documented setting)
            config: { "node.store.allow_mmap": false },
            volumeClaimTemplates: [
              {
                metadata: { name: "elasticsearch-data" },
                spec: {
                  accessModes: ["ReadWriteOnce"],
                  ...(es.storageClass ? { storageClassName: selfReplicatingClass(spec, es.storageClass, elasticsearchReplicas(spec)) } : {}),
                  resources: { requests: { storage: es.size ?? DEFAULT_SIZE.elasticsearch } },
                },
              },
            ],
          },
        ],
      },
    },
  ];
  if (spec.services.kibana.enabled) {
    out.push({
      apiVersion: "kibana.k8s.elastic.co/v1",
      kind: "Kibana",
      metadata: { name: KIBANA, namespace: ns, labels: MANAGED },
      spec: {
        version: es.stackVersion,
        count: 1,
        elasticsearchRef: { name: ELASTICSEARCH },
        // plain HTTP inside the cluster: the ingress (and the edge before it) terminates TLS
        http: { tls: { selfSignedCertificate: { disabled: true } } },
      },
    });
  }
  return out;
}

/** Strimzi's Kafka in KRaft mode: one node pool of controller+broker nodes, replication 3. */
function kafkaResources(spec: Spec): CustomResource[] {
  const k = spec.services.kafka;
  const ns = k.namespace;
  return [
    {
      apiVersion: "kafka.strimzi.io/v1",
      kind: "KafkaNodePool",
      metadata: { name: KAFKA_POOL, namespace: ns, labels: { ...MANAGED, "strimzi.io/cluster": KAFKA } },
      spec: {
        replicas: KAFKA_NODES,
        roles: ["controller", "broker"],
        storage: {
          type: "jbod",
          volumes: [{ id: 0, type: "persistent-claim", size: k.size ?? DEFAULT_SIZE.kafka, ...(k.storageClass ? { class: selfReplicatingClass(spec, k.storageClass, KAFKA_NODES) } : {}), deleteClaim: false, kraftMetadata: "shared" }],
        },
      },
    },
    {
      apiVersion: "kafka.strimzi.io/v1",
      kind: "Kafka",
      metadata: { name: KAFKA, namespace: ns, labels: MANAGED },
      spec: {
        kafka: {
          version: k.kafkaVersion,
          listeners: [
            { name: "plain", port: 9092, type: "internal", tls: false },
            { name: "tls", port: 9093, type: "internal", tls: true },
          ],
          config: {
            "offsets.topic.replication.factor": 3,
            "transaction.state.log.replication.factor": 3,
            "transaction.state.log.min.isr": 2,
            "default.replication.factor": 3,
            "min.insync.replicas": 2,
          },
        },
        entityOperator: { topicOperator: {}, userOperator: {} },
      },
    },
  ];
}

/** The services installed from a chart of their own, enabled ones, in SERVICE_NAMES order. */
function chartServices(spec: Spec): Array<{ name: Exclude<ServiceName, "ingress" | "kibana">; chart: ChartSpec }> {
  const out: Array<{ name: Exclude<ServiceName, "ingress" | "kibana">; chart: ChartSpec }> = [];
  for (const [name, s] of Object.entries(spec.services) as Array<[ServiceName, Spec["services"][ServiceName]]>) {
    if (name === "ingress" || name === "kibana" || !s.enabled || !("repo" in s)) continue;
    out.push({ name, chart: s });
  }
  return out;
}

export function manifests(ctx: ClusterContext): Manifest[] {
  const { spec, topo } = ctx;
  const svc = spec.services;
  const charts = chartServices(spec);
  const out: Manifest[] = [];
  const namespaces = [...new Set(charts.map((c) => c.chart.namespace))].filter((n) => n !== "kube-system").sort();
  out.push({
    file: "00-namespaces.yaml",
    objects: namespaces.map((n) => new Namespace({ metadata: { name: n, labels: MANAGED } })),
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
  if (svc.longhorn.enabled) {
    out.push({
      file: "10-storageclass-longhorn-single.yaml",
      objects: [
        new StorageClass({
          metadata: { name: LONGHORN_SINGLE_CLASS, labels: MANAGED },
          provisioner: "driver.longhorn.io",
          parameters: { numberOfReplicas: "1", dataLocality: "best-effort", staleReplicaTimeout: "30", fsType: "ext4" },
          reclaimPolicy: "Delete",
          volumeBindingMode: "Immediate",
          allowVolumeExpansion: true,
        }),
      ],
    });
  }
  const secrets: Secret[] = [];
  if (svc.grafana.enabled) {
    secrets.push(new Secret({ metadata: { name: "grafana-admin", namespace: svc.grafana.namespace }, type: "Opaque", stringData: { "admin-user": "admin", "admin-password": ctx.secrets.get("grafana-admin") } }));
  }
  if (svc.redis.enabled) {
    secrets.push(new Secret({ metadata: { name: "redis-auth", namespace: svc.redis.namespace }, type: "Opaque", stringData: { password: ctx.secrets.get("redis") } }));
  }
  if (svc.elasticsearch.enabled) {
    // ECK's file realm reads username, password and roles from a basic-auth Secret (cloud-on-k8s
    // pkg/controller/elasticsearch/user/user_provided.go); an elastic user there replaces the generated one
    secrets.push(
      new Secret({
        metadata: { name: ELASTIC_USER_SECRET, namespace: svc.elasticsearch.namespace, labels: MANAGED },
        type: "kubernetes.io/basic-auth",
        stringData: { username: "elastic", password: ctx.secrets.get("elastic"), roles: "superuser" },
      }),
    );
  }
  if (secrets.length) out.push({ file: "30-secrets.yaml", objects: secrets, secret: true });
  const claims: PersistentVolumeClaim[] = [];
  if (svc.prometheus.enabled && svc.prometheus.storageClass) claims.push(pvc("prometheus-server", svc.prometheus.namespace, svc.prometheus.storageClass, svc.prometheus.size ?? DEFAULT_SIZE.prometheus, "ReadWriteOnce"));
  if (svc.grafana.enabled && svc.grafana.storageClass) claims.push(pvc("grafana", svc.grafana.namespace, svc.grafana.storageClass, svc.grafana.size ?? DEFAULT_SIZE.grafana, "ReadWriteOnce"));
  if (claims.length) out.push({ file: "40-pvcs.yaml", objects: claims });
  if (svc.elasticsearch.enabled && svc.kibana.enabled && svc.ingress.enabled) {
    out.push({
      file: "45-ingresses.yaml",
      objects: [
        new Ingress({
          metadata: { name: KIBANA, namespace: svc.elasticsearch.namespace, labels: MANAGED },
          spec: {
            ingressClassName: INGRESS_CLASS,
            rules: [{ host: host(spec, "kibana"), http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: KIBANA_SERVICE, port: { number: KIBANA_PORT } } } }] } }],
          },
        }),
      ],
    });
  }
  for (const { name, chart } of charts) out.push({ file: `50-helmchart-${chart.chart}.yaml`, objects: [helmChart(chart.chart, chart, chartValues(ctx, name))] });
  if (svc.ingress.enabled) out.push({ file: "50-ingress-traefik.yaml", objects: [helmChartConfig("traefik", traefikValues(ctx)), traefikNodePorts(spec)] });
  if (spec.k3s.reboots.coordinator === "kured") out.push({ file: "60-helmchart-kured.yaml", objects: [kuredChart(spec)] });
  if (svc.elasticsearch.enabled) out.push({ file: "70-elasticsearch.yaml", objects: elasticResources(spec) });
  if (svc.kafka.enabled) out.push({ file: "70-kafka.yaml", objects: kafkaResources(spec) });
  return out;
}

function toYamlDocuments(objects: Manifest["objects"]): string {
  return objects.map((o) => stringify("toJSON" in o && typeof o.toJSON === "function" ? o.toJSON() : o, { aliasDuplicateObjects: false })).join("---\n");
}

export function renderKubernetes(ctx: ClusterContext): Artifact[] {
  const head = `# ${HEADER_TEXT}\n`;
  return manifests(ctx)
    .filter((m) => m.objects.length > 0)
    .map((m) => ({ path: `kubernetes/${m.file}`, content: head + toYamlDocuments(m.objects), secret: m.secret }));
}
