// The cluster spec: one declarative file describes the whole infrastructure.
// Zod checks shape, types, enums and the strict format of every string (formats.ts);
// network logic and cross-references are checked in checks.ts, so every problem can be
// reported at once.
import { z } from "zod";
import {
  absPath, cidr, description, httpsUrl, devicePath, dnsLabel, domainName, endpointRef, hostOrIp, ifname, ipv4, labelKey, labelValue,
  libvirtUri, lvmName, lvmSize, nfsOption, postgresVersion, realm, recordName, repoUrl, semver, shortVersion, sqlIdentifier,
  sshKeyEntry, storageQuantity, taint, userName,
} from "./formats.js";
import { K3S_DISABLE_ITEMS } from "./k3s-flags.js";
import { retiredChart, retiredText } from "./retired-sources.js";

// One spec is parsed once per process: zod's compiled fast path (new Function per object
// schema) costs more to build than it saves here, about 10 ms of every command.
z.config({ jitless: true });

/** An NFS export's options when the spec gives none (no_root_squash: the database host creates its cluster there as root). */
export const NFS_EXPORT_DEFAULT_OPTIONS = ["rw", "sync", "no_subtree_check", "no_root_squash"] as const;

export const API_VERSION = "fmc.dev/v1alpha1";

export const ROLES = [
  "k3s-server",
  "k3s-agent",
  "storage",
  "loadbalancer",
  "edge",
  "gateway",
  "firewall",
  "identity",
  "database",
] as const;
export type Role = (typeof ROLES)[number];

export const OS_FAMILIES = ["flatcar", "almalinux", "debian"] as const;
export type OsFamily = (typeof OS_FAMILIES)[number];

const name = dnsLabel;
const port = z.number().int().min(1).max(65535);
const size = lvmSize.describe('LVM size such as "20G" or "100%FREE"');
/** Lists are bounded so that a hostile spec can't make fmc do unbounded work. */
const list = <T extends z.ZodType>(item: T, max: number) => z.array(item).max(max);

/** A service a subnet may reach on the internet: any, icmp, tcp/PORT or udp/PORT. */
const egressService = z
  .string()
  .regex(/^(any|icmp|(tcp|udp)\/[1-9]\d{0,4})$/, 'must be any, icmp, tcp/PORT or udp/PORT, such as "udp/123"')
  .refine((s) => !/\/\d+$/.test(s) || Number(s.split("/")[1]) <= 65535, "must have a port from 1 to 65535");

const Subnet = z.strictObject({
  name: name.describe("short name used in rules, e.g. cluster"),
  cidr: cidr.describe("IPv4 CIDR inside network.cidr"),
  gateway: ipv4.optional().describe("default gateway of the subnet (defaults to the first address, held by the firewall)"),
  firewallInterface: ifname
    .optional()
    .describe("the firewall's LAN interface on this subnet, which holds its gateway address (default: eth1, eth2, … in subnet order)"),
  libvirt: z
    .enum(["nat", "bridge", "none"])
    .default("none")
    .describe("how Terraform provides this subnet to VMs: with a firewall host, bridge = an isolated libvirt network whose .1 is the firewall's (nat is then refused); without one, a libvirt NAT network or the host bridge; none = not at all"),
  egress: list(egressService, 32)
    .optional()
    .describe(
      "what this subnet may open to the internet through the firewall's WAN, never to private (10/8, 172.16/12, 192.168/16), shared (100.64/10) or link-local (169.254/16) addresses, since the WAN side is a home LAN: any, icmp, tcp/PORT or udp/PORT; [] for nothing. Default: [any], except a subnet holding edge hosts or the edge VIP, which gets [udp/123, tcp/80, tcp/443] (NTP, package mirrors, the Traefik download): the edge faces the internet and needs no more",
    ),
});

const Network = z.strictObject({
  cidr: cidr.default("10.17.0.0/16").describe("the private network; all cluster traffic stays inside it"),
  subnets: list(Subnet, 256).min(1),
  bridge: ifname.default("br0").describe("host bridge to the physical LAN: the firewall VM's WAN side (and, without a firewall, the subnets with libvirt: bridge)"),
  ntp: list(hostOrIp, 16).default(["0.flatcar.pool.ntp.org", "1.flatcar.pool.ntp.org"]).describe("NTP servers: host names or IPv4 addresses"),
  upstreamDns: list(ipv4, 8).default(["1.1.1.1", "9.9.9.9"]).describe("forwarders (IPv4) used by the internal DNS server only"),
});

const SshAccess = z.strictObject({
  user: userName.optional(),
  port: port.optional(),
  keys: list(sshKeyEntry, 64).optional().describe("public keys (ssh-ed25519 …, ssh-rsa …); every key is installed"),
  host: hostOrIp.optional().describe("address to connect to when it differs from the host's address (e.g. the VPS's public IP)"),
});

const Disk = z.strictObject({
  name: name,
  sizeGiB: z.number().int().positive().max(65536),
});

const Vm = z.strictObject({
  vcpu: z.number().int().positive().max(512),
  memoryMiB: z.number().int().min(256).max(16 * 1024 * 1024),
  diskGiB: z.number().int().positive().max(65536),
  dataDisks: list(Disk, 16).default([]),
});

const Host = z.strictObject({
  name: name,
  roles: list(z.enum(ROLES), ROLES.length).min(1),
  os: z.enum(OS_FAMILIES),
  address: ipv4.describe("primary IPv4 address inside one of network.subnets"),
  publicAddress: ipv4.optional().describe("public address (gateway role)"),
  interface: ifname.default("eth0").describe("network interface that carries the address"),
  ssh: SshAccess.optional(),
  vm: Vm.optional().describe("present when Terraform provisions this host as a libvirt VM"),
  labels: z.record(labelKey, labelValue).default({}).describe("extra Kubernetes node labels"),
  taints: list(taint, 32).default([]).describe("extra Kubernetes node taints, key=value:Effect"),
});

/** VRRP timing for every VIP pair (Keepalived): sub-second adverts, no preemption by default. */
const Vrrp = z.strictObject({
  advertMs: z.number().int().min(10).max(25_500).multipleOf(10).default(100).describe("VRRPv3 advert interval in ms (centisecond steps); failover takes about 3 adverts"),
  preempt: z.boolean().default(false).describe("a returning higher-priority holder takes the VIP back (a second, avoidable outage)"),
  checkMs: z.number().int().min(10).max(60_000).default(200).describe("how often each holder checks its own proxy"),
});

const Vip = z.strictObject({
  name: name,
  address: ipv4,
  role: z.enum(["loadbalancer", "edge"]).describe("hosts of this role hold the VIP with Keepalived"),
  routerId: z.number().int().min(1).max(255).describe("VRRP virtual_router_id, unique on the segment"),
});

const cronSchedule = z
  .string()
  .regex(/^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every \d{1,4}[smh]|[0-9*\/,-]{1,20}( [0-9*\/,-]{1,20}){4})$/, 'must be a cron schedule such as "0 */6 * * *"');
const argText = z.string().max(1024);
const argValue = z.union([argText, z.boolean(), z.number().int(), list(argText, 64)]);

/** etcd snapshots copied to S3 (K3s's etcd-s3* flags). Credentials never appear in the spec. */
const EtcdS3 = z.strictObject({
  endpoint: z
    .string()
    .regex(/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?$/, 'must be a host name or address with an optional port, such as "s3.eu-central-1.amazonaws.com" or "10.17.3.20:9000"')
    .default("s3.amazonaws.com")
    .describe("S3 endpoint, host[:port] without a scheme (K3s etcd-s3-endpoint)"),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be an S3 bucket name: 3-63 of a-z 0-9 . -").describe("bucket the snapshots go to (K3s etcd-s3-bucket)"),
  folder: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}(\/[A-Za-z0-9_.-]{1,64}){0,7}$/, "must be a relative folder such as fmc/etcd: A-Z a-z 0-9 _ . - between slashes")
    .optional()
    .describe("folder inside the bucket (K3s etcd-s3-folder)"),
  region: z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'must be a region such as "eu-central-1"').optional().describe("bucket region (K3s etcd-s3-region; K3s's default is us-east-1)"),
  endpointCa: absPath.optional().describe("CA bundle on the servers for an endpoint with a private CA (K3s etcd-s3-endpoint-ca)"),
  insecure: z.boolean().default(false).describe("plain HTTP to the endpoint (K3s etcd-s3-insecure); only for an endpoint inside the LAN"),
  credentialsFile: absPath
    .default("/etc/rancher/k3s/etcd-s3.env")
    .describe("environment file on every server, mode 0600, holding AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=… (K3s reads its S3 keys from these variables); you place it, so the keys are never in the spec or in a rendered file"),
});

/** Reboots after Flatcar updates: kured drains and reboots one node at a time. */
const Reboots = z.strictObject({
  coordinator: z
    .enum(["kured", "none"])
    .default("kured")
    .describe("kured: a DaemonSet that drains and reboots one node at a time when Flatcar's update_engine has left /run/reboot-required; none: updates wait for a manual reboot"),
  repo: repoUrl.default("https://kubereboot.github.io/charts").describe("kured's Helm repository"),
  version: semver.default("6.1.0").describe("kured chart version (kubereboot/charts charts/kured)"),
  window: z
    .strictObject({
      days: list(z.enum(["su", "mo", "tu", "we", "th", "fr", "sa"]), 7).optional().describe("days reboots may happen on (kured --reboot-days; default: every day)"),
      start: z.string().regex(/^([01]?\d|2[0-3]):[0-5]\d$/, 'must be a time of day such as "02:00"'),
      end: z.string().regex(/^([01]?\d|2[0-3]):[0-5]\d$/, 'must be a time of day such as "05:00"'),
      timeZone: z.string().regex(/^(UTC|Local|[A-Z][A-Za-z_]{1,30}(\/[A-Z][A-Za-z_+-]{1,30}){1,2})$/, 'must be UTC, Local or a zone such as "Europe/Madrid"').default("UTC"),
    })
    .optional()
    .describe("reboots only inside this daily window (default: any time)"),
});

const K3s = z.strictObject({
  version: z.string().regex(/^v\d+\.\d+\.\d+\+k3s\d+$/, 'must look like "v1.33.4+k3s1"').default("v1.33.4+k3s1"),
  sha256: z
    .string()
    .regex(/^[a-f0-9]{64}$/)
    .optional()
    .describe("sha256 of the k3s binary; when absent, nodes verify against the release's sha256sum-amd64.txt"),
  airgapPath: absPath.optional().describe("absolute path of a pre-placed k3s binary on the nodes; no download; requires k3s.sha256"),
  apiVip: name.default("api").describe("name of the VIP that fronts the Kubernetes API"),
  clusterCidr: cidr.default("10.42.0.0/16"),
  serviceCidr: cidr.default("10.43.0.0/16"),
  disable: list(z.enum(K3S_DISABLE_ITEMS), K3S_DISABLE_ITEMS.length).default(["traefik", "servicelb"]).describe("packaged K3s components not to deploy"),
  snapshotSchedule: cronSchedule.default("0 */6 * * *").describe("etcd snapshot schedule (cron, on every server)"),
  snapshotRetention: z.number().int().min(1).max(1000).default(20).describe("etcd snapshots kept per server"),
  etcdS3: EtcdS3.optional().describe("also copy every etcd snapshot to S3 (off when absent: snapshots stay on the servers' disks)"),
  serverTaint: z
    .boolean()
    .optional()
    .describe("taint servers CriticalAddonsOnly=true:NoExecute so workloads stay off the control plane (default: on when the spec has k3s-agent hosts)"),
  reboots: Reboots.default(Reboots.parse({})).describe("who reboots nodes after Flatcar updates"),
  ingressNodePorts: z
    .strictObject({ http: port.default(30080), https: port.default(30443) })
    .default({ http: 30080, https: 30443 })
    .describe("NodePorts of the in-cluster ingress controller that HAProxy forwards 80/443 to"),
  serverArgs: z.record(z.string().max(64), argValue).default({}).describe("extra K3s server config.yaml keys; unknown keys and keys fmc manages are errors"),
  agentArgs: z.record(z.string().max(64), argValue).default({}).describe("extra K3s agent config.yaml keys; unknown keys and keys fmc manages are errors"),
});

const HealthCheck = z.strictObject({
  interMs: z.number().int().min(100).max(3_600_000).default(3000),
  fall: z.number().int().positive().max(100).default(3),
  rise: z.number().int().positive().max(100).default(2),
});

const LoadBalancer = z.strictObject({
  apiPort: port.default(6443),
  httpPort: port.default(80),
  httpsPort: port.default(443),
  statsPort: port.default(8404).describe("HAProxy stats page, bound to 127.0.0.1 only"),
  metricsPort: port.default(8405).describe("HAProxy Prometheus exporter on the host address"),
  maxconn: z
    .number()
    .int()
    .min(100)
    .max(200000)
    .default(8000)
    .describe("HAProxy global maxconn; needs about 2 file descriptors per connection"),
  check: HealthCheck.default({ interMs: 3000, fall: 3, rise: 2 }),
});

const TraefikBinary = z
  .strictObject({
    path: absPath.optional().describe("a traefik binary on the machine that runs fmc, uploaded to the edge nodes"),
    url: httpsUrl.optional().describe("a release archive or binary URL the edge nodes download"),
    sha256: z.string().regex(/^[a-f0-9]{64}$/, "must be 64 lower-case hex digits").describe("SHA-256 of the file at path or url; a mismatch is refused"),
  })
  .refine((b) => (b.path === undefined) !== (b.url === undefined), "give exactly one of path or url");

const Edge = z.strictObject({
  engine: z.enum(["traefik", "haproxy"]).default("traefik").describe("the edge proxy: Traefik (the seed's choice) or HAProxy in HTTP mode"),
  traefikBinary: TraefikBinary.optional().describe("where the Traefik binary comes from (engine traefik)"),
  vip: name.default("edge").describe("name of the VIP the firewall forwards 80/443 to"),
  traefikVersion: shortVersion.default("v3.5"),
  certFile: absPath.default("/etc/traefik/certs/origin.pem"),
  keyFile: absPath.default("/etc/traefik/certs/origin-key.pem"),
  metricsPort: port.default(8082),
});

const LogicalVolume = z.strictObject({
  name: lvmName,
  size: size,
  mount: absPath,
  filesystem: z.enum(["ext4", "xfs"]).default("ext4"),
});

const NfsExport = z.strictObject({
  path: absPath,
  clients: list(z.string().max(18), 64).min(1).describe("CIDRs or addresses allowed to mount"),
  options: list(nfsOption, 16).default([...NFS_EXPORT_DEFAULT_OPTIONS]).describe("exports(5) options from a known set (the shared export is always root_squash)"),
});

const Storage = z.strictObject({
  host: name.default("storage1"),
  device: devicePath.default("/dev/vdb").describe("data disk that holds the LVM physical volume"),
  volumeGroup: lvmName.default("data"),
  volumes: list(LogicalVolume, 64).default([]),
  exports: list(NfsExport, 64).default([]),
  longhornPath: absPath.default("/mnt/longhorn-disk").describe("where each Longhorn node mounts its Longhorn disk (storage host: the volume mounted here; other K3s agents: their first data disk)"),
  longhornReplicas: z.number().int().min(1).max(3).optional().describe("Longhorn replicas per volume; default 2 when two or more nodes have a Longhorn disk (survives losing one), else 1"),
  sharedExport: absPath.default("/srv/nfs/shared").describe("export behind the RWX StorageClass"),
});

const DatabaseBackup = z.strictObject({
  to: z.enum(["local", "storage"]).default("local").describe("where fmc backup postgres writes: a directory on the machine that runs fmc, or storagePath on the storage host"),
  dir: z
    .string()
    .regex(/^[A-Za-z0-9_.~/-]{1,255}$/, "must be a directory path of A-Z a-z 0-9 _ . ~ / -")
    .default("backups")
    .describe("to: local: the directory, relative to the spec file unless absolute (fmc backup -o overrides it)"),
  storagePath: absPath.default("/srv/backups/postgresql").describe("to: storage: the directory on the storage host"),
  keep: z.number().int().min(1).max(1000).default(7).describe("backups kept per database, newest first; older ones and their .sha256 files are removed after a good backup"),
});

const Database = z.strictObject({
  host: name.default("postgresql1"),
  postgresVersion: postgresVersion.default("16"),
  dataDir: absPath.default("/var/lib/pgsql"),
  nfsExport: absPath.optional().describe("storage export mounted at dataDir (PostgreSQL data on NFS)"),
  databases: list(sqlIdentifier, 64).default(["app"]),
  backup: DatabaseBackup.default(DatabaseBackup.parse({})).describe("fmc backup postgres: pg_dump files with a .sha256 beside each"),
});

/** Cloudflare's published IPv4 ranges (https://www.cloudflare.com/ips-v4, read 2026-11-25). */
export const CLOUDFLARE_IPV4 = [
  "173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "141.101.64.0/18",
  "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20", "197.234.240.0/22", "198.41.128.0/17",
  "162.158.0.0/15", "104.16.0.0/13", "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
];

const WireGuard = z.strictObject({
  endpoint: hostOrIp.optional().describe("name or address the LAN peer dials; default: the gateway's publicAddress (a name must be an unproxied DNS record)"),
  port: port.default(51820),
  interface: ifname.default("wg0"),
  mtu: z.number().int().min(1280).max(1500).default(1420),
  persistentKeepalive: z.number().int().min(0).max(3600).default(25),
  lanPeer: name.describe("host that terminates the tunnel inside the LAN (the firewall)"),
  publicInterface: ifname.default("eth0").describe("the VPS's internet-facing interface"),
  forwardPorts: list(port, 32).min(1).default([80, 443]).describe("public TCP ports the VPS forwards into the tunnel"),
  forwardFrom: list(cidr, 256)
    .min(1)
    .default(CLOUDFLARE_IPV4)
    .describe("sources the VPS forwards those ports from (default: Cloudflare's published ranges, so nobody bypasses Cloudflare)"),
  adminSubnet: cidr.optional().describe("tunnel addresses for remote-admin peers (fmc wireguard add-peer); default: the upper half of the tunnel subnet"),
  sshFrom: list(cidr, 256)
    .optional()
    .describe(
      "sources that may SSH to the gateway on its public interface (your own address, as a CIDR); through the tunnel (the LAN peer's side and the admin peers) it is always allowed. Default: from anywhere, as before this setting existed: fmc reaches a new VPS at its public address. [] closes the public side: only the tunnel",
    ),
});

const Rule = z.strictObject({
  description: description,
  from: endpointRef.describe("subnet name, host name, VIP name, CIDR, or any"),
  to: endpointRef.describe("subnet name, host name, VIP name, CIDR, or any"),
  protocol: z.enum(["tcp", "udp", "icmp", "any"]).default("tcp"),
  ports: list(port, 64).default([]),
});

const PortForward = z.strictObject({
  description: description,
  protocol: z.enum(["tcp", "udp"]).default("tcp"),
  port: port,
  to: name.describe("host or VIP name"),
  toPort: port.optional(),
});

const Firewall = z.strictObject({
  host: name.default("firewall1"),
  wanInterface: ifname.default("eth0"),
  management: list(endpointRef, 64)
    .default(["any"])
    .describe("sources that may SSH to the firewall itself: any = its LAN side (never the tunnel or the WAN); a subnet, host, VIP or CIDR is matched by address on any interface"),
  rules: list(Rule, 1024).default([]),
  portForwards: list(PortForward, 256).default([]),
});

const CfRecord = z.strictObject({
  name: recordName.describe('record name relative to the zone; "@" is the apex'),
  proxied: z.boolean().default(true),
});

const Cloudflare = z.strictObject({
  zone: domainName.describe("public zone, e.g. example.com"),
  records: list(CfRecord, 256).default([{ name: "@", proxied: true }]),
  sslMode: z.enum(["off", "flexible", "full", "strict"]).default("strict"),
  dnssec: z.boolean().default(true),
});

const volume = {
  storageClass: z.enum(["longhorn", "nfs-shared"]).optional(),
  size: storageQuantity.optional(),
};

const Chart = z.strictObject({
  enabled: z.boolean().default(true),
  repo: repoUrl,
  chart: name,
  version: semver,
  namespace: name,
  ...volume,
});

/** A service whose values fmc writes for one chart: the chart name is fixed, its repository (a mirror) and version are the spec's. */
const chartOf = (chart: string, what: string) => Chart.extend({ chart: z.literal(chart).describe(`${what}; fmc's values are written for this chart`) });

const Redis = chartOf("redis-ha", "redis-ha (dandydeveloper.github.io/charts): Redis on the official image with Sentinel failover, three pods with a volume each").describe(
  "Redis with replication and Sentinel failover (the redis-ha chart); AUTH from the secret store",
);

const Kafka = chartOf("strimzi-kafka-operator", "the Strimzi operator chart (oci://quay.io/strimzi-helm)")
  .extend({ kafkaVersion: semver.default("4.3.1").describe("Kafka version of the cluster (a version the pinned Strimzi operator supports)") })
  .describe("Kafka run by the Strimzi operator: a Kafka resource in KRaft mode with one node pool of three controller+broker nodes");

const Elasticsearch = chartOf("eck-operator", "the ECK operator chart (helm.elastic.co)")
  .extend({ stackVersion: semver.default("9.4.3").describe("Elasticsearch and Kibana version the ECK operator runs (one the pinned operator supports)") })
  .describe("Elasticsearch run by the ECK operator (Elasticsearch resource); the elastic user's password from the secret store, TLS certificates issued and renewed by ECK");

const Kibana = z
  .strictObject({ enabled: z.boolean().default(true) })
  .describe("Kibana run by the ECK operator beside Elasticsearch (same namespace and version), at kibana.<domain> through the ingress");

const Ingress = z
  .strictObject({ enabled: z.boolean().default(true) })
  .describe(
    "the in-cluster ingress controller: K3s's packaged Traefik (its chart comes with k3s.version), a DaemonSet configured by a HelmChartConfig, reached through fmc's NodePort Service on k3s.ingressNodePorts; ingress class traefik",
  );

const SERVICE_NAMES = [
  "longhorn",
  "nfsCsi",
  "ingress",
  "prometheus",
  "grafana",
  "elasticsearch",
  "kibana",
  "fluentBit",
  "redis",
  "kafka",
] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

const Services = z
  .strictObject({
    longhorn: Chart,
    nfsCsi: Chart,
    ingress: Ingress.default({ enabled: true }),
    prometheus: Chart,
    grafana: Chart,
    elasticsearch: Elasticsearch,
    kibana: Kibana.default({ enabled: true }),
    fluentBit: Chart.describe("Fluent Bit on every node, shipping container logs to Elasticsearch (same namespace: it reads Elasticsearch's CA and credentials)"),
    redis: Redis,
    kafka: Kafka,
  })
  .superRefine((svc, ctx) => {
    for (const [key, s] of Object.entries(svc)) {
      if (!s.enabled || !("repo" in s)) continue;
      const retired = retiredChart(s.repo, s.chart);
      if (retired) ctx.addIssue({ code: "custom", path: [key, "repo"], message: `${s.repo} ${s.chart} is from a retired source: ${retiredText(retired)}` });
    }
    const es = svc.elasticsearch;
    if (svc.kibana.enabled && !es.enabled) ctx.addIssue({ code: "custom", path: ["kibana", "enabled"], message: "Kibana runs beside Elasticsearch (ECK): enable services.elasticsearch, or disable Kibana" });
    if (svc.fluentBit.enabled && !es.enabled) ctx.addIssue({ code: "custom", path: ["fluentBit", "enabled"], message: "Fluent Bit ships logs to Elasticsearch: enable services.elasticsearch, or disable Fluent Bit" });
    if (svc.fluentBit.enabled && es.enabled && svc.fluentBit.namespace !== es.namespace) {
      ctx.addIssue({ code: "custom", path: ["fluentBit", "namespace"], message: `must be Elasticsearch's namespace (${es.namespace}): Fluent Bit reads its CA certificate and credentials from Secrets there` });
    }
  });

/**
 * libvirt <cpu mode=…> values that need no CPU model (dmacvicar/libvirt 0.8.3 sets only
 * the mode); "none" renders no cpu block, leaving QEMU's default model (qemu64).
 */
export const CPU_MODES = ["host-passthrough", "host-model", "maximum", "none"] as const;

/** Where Terraform keeps each root module's state: at most one of these (none: terraform.tfstate in the module's directory under -o). */
const StateBackend = z
  .strictObject({
    local: z
      .strictObject({
        dir: absPath.describe("directory outside the output directory (an encrypted disk, a backed-up share); each module's state is <dir>/<cluster name>-<module>.tfstate"),
      })
      .optional()
      .describe("Terraform's local backend, with the state files in a directory of your choice"),
    s3: z
      .strictObject({
        bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be an S3 bucket name: 3-63 of a-z 0-9 . -").describe("bucket for the state files (turn on its versioning: old states are then recoverable)"),
        keyPrefix: z
          .string()
          .regex(/^[A-Za-z0-9_.-]{1,64}(\/[A-Za-z0-9_.-]{1,64}){0,7}$/, "must be a relative key prefix such as fmc/state: A-Z a-z 0-9 _ . - between slashes")
          .default("fmc")
          .describe("each module's state is <keyPrefix>/<cluster name>/<module>.tfstate"),
        region: z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'must be a region such as "eu-central-1"').optional().describe("bucket region (default: AWS_REGION from the environment; us-east-1 with an endpoint)"),
        endpoint: z
          .string()
          .regex(/^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/, 'must be a scheme and host such as "https://minio.example.com:9000"')
          .optional()
          .describe("an S3-compatible store (MinIO, Ceph): path-style requests, no AWS account or region checks"),
        encrypt: z.boolean().optional().describe("server-side encryption of the state object (default: on for AWS, off with an endpoint, which may not offer it)"),
        lockfile: z.boolean().default(true).describe("S3-native state locking, a <key>.tflock object (use_lockfile: Terraform and OpenTofu 1.10 or later)"),
      })
      .optional()
      .describe("an S3 bucket; credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE), never from the spec"),
    http: z
      .strictObject({
        address: z
          .string()
          .regex(/^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~%+-]+)*$/, "must be an http(s) URL with a plain path and no credentials")
          .max(512)
          .describe("base URL; each module's state is <address>/<cluster name>-<module> (GitLab: https://gitlab.example.com/api/v4/projects/<id>/terraform/state)"),
        lockMethod: z.string().regex(/^[A-Z]{3,10}$/, "must be an HTTP method such as LOCK or POST").default("LOCK").describe("HTTP method that takes the lock (GitLab: POST)"),
        unlockMethod: z.string().regex(/^[A-Z]{3,10}$/, "must be an HTTP method such as UNLOCK or DELETE").default("UNLOCK").describe("HTTP method that releases it (GitLab: DELETE)"),
      })
      .optional()
      .describe("a REST endpoint (GitLab's managed state, for one); credentials from TF_HTTP_USERNAME and TF_HTTP_PASSWORD in the environment"),
    pg: z
      .strictObject({
        connStr: z
          .string()
          .regex(/^postgres(ql)?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?\/[A-Za-z0-9_-]{1,63}(\?[A-Za-z0-9_=&.-]{0,256})?$/, "must be a postgres:// URL with a host and a database, without user or password")
          .refine((s) => !/[?&](password|user)=/i.test(s), "must not carry a user or password: set PGUSER and PGPASSWORD in the environment")
          .optional()
          .describe("postgres://host[:port]/database[?sslmode=…] (default: PG_CONN_STR from the environment); the user and password come from PGUSER and PGPASSWORD"),
        schemaPrefix: sqlIdentifier.optional().describe("each module's state is in the schema <schemaPrefix>_<module> (default: fmc_<cluster name>)"),
      })
      .optional()
      .describe("a PostgreSQL database"),
  })
  .refine((b) => [b.local, b.s3, b.http, b.pg].filter((x) => x !== undefined).length <= 1, "give at most one of local, s3, http, pg");

/** OpenTofu's state encryption (1.8 or later): the state and plan files are AES-GCM ciphertext. */
const StateEncryption = z.strictObject({
  method: z
    .enum(["pbkdf2-aes-gcm"])
    .default("pbkdf2-aes-gcm")
    .describe("AES-GCM with a key derived (PBKDF2) from a passphrase fmc generates once and keeps in its state directory (fmc provision secret show state-passphrase)"),
  fromUnencrypted: z
    .boolean()
    .default(false)
    .describe("also read a state that is not encrypted yet (OpenTofu's unencrypted fallback, enforcement off): set it for the first apply after turning encryption on, then remove it"),
});

const Provisioning = z.strictObject({
  libvirtUri: libvirtUri.default("qemu:///system"),
  poolPath: absPath.default("/var/lib/libvirt/images/fmc"),
  flatcarChannel: z.enum(["stable", "beta", "alpha", "lts"]).default("stable"),
  cpuMode: z
    .enum(CPU_MODES)
    .default("host-passthrough")
    .describe("CPU of every VM (libvirt cpu mode): host-passthrough gives the host's CPU (AlmaLinux 9 needs x86-64-v2); host-model a migratable copy; maximum all QEMU can offer; none QEMU's qemu64, which AlmaLinux 9 refuses to boot on. Changing it replaces the VMs (the provider forces a new domain)"),
  backend: StateBackend.optional().describe("where Terraform keeps its state (default: terraform.tfstate in each module's directory, out/terraform/<module>/)"),
  stateEncryption: StateEncryption.optional().describe("encrypt the state with OpenTofu (fmc provision then runs tofu); the state holds every Ignition config, K3s token included"),
});

const Dns = z.strictObject({
  engine: z.enum(["freeipa", "bind9"]).default("freeipa").describe("the internal DNS server on the identity host: FreeIPA's integrated DNS, or bind9"),
});

const Identity = z.strictObject({
  host: name.default("freeipa1"),
  realm: realm.optional().describe("Kerberos realm; defaults to the upper-cased domain"),
});

export const SpecSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Cluster"),
  name: name,
  domain: domainName,
  ssh: z
    .strictObject({
      user: userName.default("core"),
      port: port.default(22),
      keys: list(sshKeyEntry, 64)
        .default([])
        .describe("public keys, or paths to .pub files (~ allowed), installed on every host in addition to a host's own"),
      generatedKey: z
        .boolean()
        .default(true)
        .describe("also install fmc's own ed25519 admin key, generated once into the state directory"),
    })
    .default({ user: "core", port: 22, keys: [], generatedKey: true }),
  network: Network,
  hosts: list(Host, 5000).min(1),
  vips: list(Vip, 64).default([]),
  vrrp: Vrrp.default(Vrrp.parse({})),
  k3s: K3s.default(K3s.parse({})),
  loadBalancer: LoadBalancer.default(LoadBalancer.parse({})),
  edge: Edge.default(Edge.parse({})),
  storage: Storage.optional(),
  database: Database.optional(),
  identity: Identity.optional(),
  dns: Dns.default(Dns.parse({})),
  wireguard: WireGuard.optional(),
  firewall: Firewall.optional(),
  cloudflare: Cloudflare.optional(),
  services: Services,
  provisioning: Provisioning.default(Provisioning.parse({})),
});

export type SpecInput = z.input<typeof SpecSchema>;
export type Spec = z.output<typeof SpecSchema>;
export type Host = Spec["hosts"][number];
export type Vip = Spec["vips"][number];
export type Subnet = Spec["network"]["subnets"][number];
export type ServiceSpec = Spec["services"][ServiceName];
/** The services installed from a chart of their own (the ingress is K3s's packaged Traefik, Kibana an ECK resource). */
export type ChartSpec = Extract<ServiceSpec, { repo: string }>;
