// The cluster spec: one declarative file describes the whole infrastructure.
// Zod checks shape, types and enums here; network logic and cross-references are
// checked in validate.ts so every problem can be reported at once.
import { z } from "zod";

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

const name = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "must be a lowercase DNS label (a-z, 0-9, -)");
const port = z.number().int().min(1).max(65535);
const absPath = z.string().describe("absolute path");
const size = z
  .string()
  .regex(/^(\d+[KMGT]|\d+%FREE)$/, 'must look like "20G", "512M" or "100%FREE"')
  .describe('LVM size such as "20G" or "100%FREE"');

const Subnet = z.strictObject({
  name: name.describe("short name used in rules, e.g. cluster"),
  cidr: z.string().describe("IPv4 CIDR inside network.cidr"),
  gateway: z.string().optional().describe("default gateway of the subnet (defaults to the first address, held by the firewall)"),
  libvirt: z
    .enum(["nat", "bridge", "none"])
    .default("none")
    .describe("how Terraform provides this subnet to VMs: a libvirt NAT network, the host bridge, or not at all"),
});

const Network = z.strictObject({
  cidr: z.string().default("10.17.0.0/16").describe("the private network; all cluster traffic stays inside it"),
  subnets: z.array(Subnet).min(1),
  bridge: z.string().default("br0").describe("host bridge to the physical LAN, for subnets with libvirt: bridge"),
  ntp: z.array(z.string()).default(["0.flatcar.pool.ntp.org", "1.flatcar.pool.ntp.org"]),
  upstreamDns: z.array(z.string()).default(["1.1.1.1", "9.9.9.9"]).describe("forwarders used by the internal DNS server only"),
});

const SshAccess = z.strictObject({
  user: z.string().optional(),
  port: port.optional(),
  keys: z.array(z.string()).optional().describe("public keys (ssh-ed25519 …, ssh-rsa …); every key is installed"),
  host: z.string().optional().describe("address to connect to when it differs from the host's address (e.g. the VPS's public IP)"),
});

const Disk = z.strictObject({
  name: name,
  sizeGiB: z.number().int().positive(),
});

const Vm = z.strictObject({
  vcpu: z.number().int().positive(),
  memoryMiB: z.number().int().min(256),
  diskGiB: z.number().int().positive(),
  dataDisks: z.array(Disk).default([]),
});

const Host = z.strictObject({
  name: name,
  roles: z.array(z.enum(ROLES)).min(1),
  os: z.enum(OS_FAMILIES),
  address: z.string().describe("primary IPv4 address inside one of network.subnets"),
  publicAddress: z.string().optional().describe("public address (gateway role)"),
  interface: z.string().default("eth0").describe("network interface that carries the address"),
  ssh: SshAccess.optional(),
  vm: Vm.optional().describe("present when Terraform provisions this host as a libvirt VM"),
  labels: z.record(z.string(), z.string()).default({}).describe("extra Kubernetes node labels"),
  taints: z.array(z.string()).default([]).describe("extra Kubernetes node taints, key=value:Effect"),
});

const Vip = z.strictObject({
  name: name,
  address: z.string(),
  role: z.enum(["loadbalancer", "edge"]).describe("hosts of this role hold the VIP with Keepalived"),
  routerId: z.number().int().min(1).max(255).describe("VRRP virtual_router_id, unique on the segment"),
});

const K3s = z.strictObject({
  version: z.string().regex(/^v\d+\.\d+\.\d+\+k3s\d+$/, 'must look like "v1.33.4+k3s1"').default("v1.33.4+k3s1"),
  sha256: z
    .string()
    .regex(/^[a-f0-9]{64}$/)
    .optional()
    .describe("sha256 of the k3s binary; when absent, nodes verify against the release's sha256sum-amd64.txt"),
  airgapPath: z.string().optional().describe("absolute path of a pre-placed k3s binary on the nodes; no download"),
  apiVip: z.string().default("api").describe("name of the VIP that fronts the Kubernetes API"),
  clusterCidr: z.string().default("10.42.0.0/16"),
  serviceCidr: z.string().default("10.43.0.0/16"),
  disable: z.array(z.string()).default(["traefik", "servicelb"]),
  ingressNodePorts: z
    .strictObject({ http: port.default(30080), https: port.default(30443) })
    .default({ http: 30080, https: 30443 })
    .describe("NodePorts of the in-cluster ingress controller that HAProxy forwards 80/443 to"),
  serverArgs: z.record(z.string(), z.union([z.string(), z.boolean(), z.array(z.string())])).default({}),
  agentArgs: z.record(z.string(), z.union([z.string(), z.boolean(), z.array(z.string())])).default({}),
});

const HealthCheck = z.strictObject({
  interMs: z.number().int().positive().default(3000),
  fall: z.number().int().positive().default(3),
  rise: z.number().int().positive().default(2),
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

const Edge = z.strictObject({
  vip: z.string().default("edge").describe("name of the VIP the firewall forwards 80/443 to"),
  traefikVersion: z.string().default("v3.5"),
  certFile: absPath.default("/etc/traefik/certs/origin.pem"),
  keyFile: absPath.default("/etc/traefik/certs/origin-key.pem"),
  metricsPort: port.default(8082),
});

const LogicalVolume = z.strictObject({
  name: z.string().regex(/^[a-zA-Z0-9_]+$/),
  size: size,
  mount: z.string(),
  filesystem: z.enum(["ext4", "xfs"]).default("ext4"),
});

const NfsExport = z.strictObject({
  path: z.string(),
  clients: z.array(z.string()).min(1).describe("CIDRs or addresses allowed to mount"),
  options: z.array(z.string()).default(["rw", "sync", "no_subtree_check", "no_root_squash"]),
});

const Storage = z.strictObject({
  host: name.default("storage1"),
  device: z.string().default("/dev/vdb").describe("data disk that holds the LVM physical volume"),
  volumeGroup: z.string().regex(/^[a-zA-Z0-9_]+$/).default("data"),
  volumes: z.array(LogicalVolume).default([]),
  exports: z.array(NfsExport).default([]),
  longhornPath: z.string().default("/mnt/longhorn-disk"),
  sharedExport: z.string().default("/srv/nfs/shared").describe("export behind the RWX StorageClass"),
});

const Database = z.strictObject({
  host: name.default("postgresql1"),
  postgresVersion: z.string().default("16"),
  dataDir: z.string().default("/var/lib/pgsql"),
  nfsExport: z.string().optional().describe("storage export mounted at dataDir (PostgreSQL data on NFS)"),
  databases: z.array(name).default(["app"]),
});

const WireGuard = z.strictObject({
  endpoint: z.string().describe("public DNS name or address of the VPS"),
  port: port.default(51820),
  interface: z.string().default("wg0"),
  mtu: z.number().int().min(1280).max(1500).default(1420),
  persistentKeepalive: z.number().int().min(0).max(3600).default(25),
  lanPeer: name.describe("host that terminates the tunnel inside the LAN (the firewall)"),
  publicInterface: z.string().default("eth0").describe("the VPS's internet-facing interface"),
  forwardPorts: z.array(port).default([80, 443]).describe("public TCP ports the VPS forwards into the tunnel"),
});

const Rule = z.strictObject({
  description: z.string(),
  from: z.string().describe("subnet name, host name, VIP name, CIDR, or any"),
  to: z.string().describe("subnet name, host name, VIP name, CIDR, or any"),
  protocol: z.enum(["tcp", "udp", "icmp", "any"]).default("tcp"),
  ports: z.array(port).default([]),
});

const PortForward = z.strictObject({
  description: z.string(),
  protocol: z.enum(["tcp", "udp"]).default("tcp"),
  port: port,
  to: z.string().describe("host or VIP name"),
  toPort: port.optional(),
});

const Firewall = z.strictObject({
  host: name.default("firewall1"),
  wanInterface: z.string().default("eth0"),
  lanInterface: z.string().default("eth1"),
  rules: z.array(Rule).default([]),
  portForwards: z.array(PortForward).default([]),
});

const CfRecord = z.strictObject({
  name: z.string().describe('record name relative to the zone; "@" is the apex'),
  proxied: z.boolean().default(true),
});

const Cloudflare = z.strictObject({
  zone: z.string().describe("public zone, e.g. example.com"),
  records: z.array(CfRecord).default([{ name: "@", proxied: true }]),
  sslMode: z.enum(["off", "flexible", "full", "strict"]).default("strict"),
  dnssec: z.boolean().default(true),
});

const Chart = z.strictObject({
  enabled: z.boolean().default(true),
  repo: z.string(),
  chart: z.string(),
  version: z.string(),
  namespace: name,
  storageClass: z.enum(["longhorn", "nfs-shared"]).optional(),
  size: z.string().regex(/^\d+(Mi|Gi|Ti)$/).optional(),
});

export const SERVICE_NAMES = [
  "longhorn",
  "nfsCsi",
  "ingressNginx",
  "prometheus",
  "grafana",
  "elasticsearch",
  "kibana",
  "fluentBit",
  "redis",
  "kafka",
] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

const Services = z.strictObject(
  Object.fromEntries(SERVICE_NAMES.map((s) => [s, Chart])) as Record<ServiceName, typeof Chart>,
);

const Provisioning = z.strictObject({
  libvirtUri: z.string().default("qemu:///system"),
  poolPath: z.string().default("/var/lib/libvirt/images/fmc"),
  flatcarChannel: z.enum(["stable", "beta", "alpha", "lts"]).default("stable"),
});

const Identity = z.strictObject({
  host: name.default("freeipa1"),
  realm: z.string().optional().describe("Kerberos realm; defaults to the upper-cased domain"),
});

export const SpecSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Cluster"),
  name: name,
  domain: z.string().regex(/^([a-z0-9-]+\.)+[a-z]{2,}$/, "must be a DNS domain such as fmc.lan"),
  ssh: z
    .strictObject({
      user: z.string().default("core"),
      port: port.default(22),
      keys: z
        .array(z.string())
        .default([])
        .describe("public keys, or paths to .pub files (~ allowed), installed on every host in addition to a host's own"),
      generatedKey: z
        .boolean()
        .default(true)
        .describe("also install fmc's own ed25519 admin key, generated once into the state directory"),
    })
    .default({ user: "core", port: 22, keys: [], generatedKey: true }),
  network: Network,
  hosts: z.array(Host).min(1),
  vips: z.array(Vip).default([]),
  k3s: K3s.default(K3s.parse({})),
  loadBalancer: LoadBalancer.default(LoadBalancer.parse({})),
  edge: Edge.default(Edge.parse({})),
  storage: Storage.optional(),
  database: Database.optional(),
  identity: Identity.optional(),
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
export type ChartSpec = Spec["services"][ServiceName];
