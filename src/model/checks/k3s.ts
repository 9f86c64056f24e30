// The K3s section: server count for etcd quorum, the API VIP, pod and service ranges apart
// from each other and from the hosts' network, serverArgs/agentArgs that are real K3s
// flags fmc does not manage itself, NodePorts in range, and hosts fit to run K3s.
import { overlaps } from "../net.js";
import { K3S_AGENT_FLAGS, K3S_SERVER_FLAGS } from "../k3s-flags.js";
import { didYouMean } from "../../errors.js";
import { cidrAt, type Checker, type Layout, type Names, type Report } from "./context.js";

/** config.yaml keys fmc writes itself; serverArgs/agentArgs may not override them. */
const K3S_MANAGED_KEYS: Readonly<Record<string, string>> = {
  token: "generated into the secret store",
  "token-file": "fmc manages the join token",
  "agent-token": "fmc manages the join tokens",
  "agent-token-file": "fmc manages the join tokens",
  server: "every node joins through the API VIP (k3s.apiVip)",
  "cluster-init": "the first k3s-server initialises the cluster, until it exists",
  "resolv-conf": "fmc writes /etc/rancher/k3s/resolv.conf (the internal DNS)",
  "etcd-s3": "use k3s.etcdS3",
  "etcd-s3-endpoint": "use k3s.etcdS3.endpoint",
  "etcd-s3-bucket": "use k3s.etcdS3.bucket",
  "etcd-s3-folder": "use k3s.etcdS3.folder",
  "etcd-s3-region": "use k3s.etcdS3.region",
  "etcd-s3-endpoint-ca": "use k3s.etcdS3.endpointCa",
  "etcd-s3-insecure": "use k3s.etcdS3.insecure",
  "etcd-s3-access-key": "S3 keys never go in the spec: put them in k3s.etcdS3.credentialsFile on the servers",
  "etcd-s3-secret-key": "S3 keys never go in the spec: put them in k3s.etcdS3.credentialsFile on the servers",
  "cluster-reset": "a day-2 operation, never a standing setting",
  "cluster-reset-restore-path": "a day-2 operation, never a standing setting",
  "node-name": "the host's name",
  "node-ip": "the host's address",
  "node-label": "use hosts[].labels",
  "node-taint": "use hosts[].taints (and k3s.serverTaint)",
  "tls-san": "the API VIP, api.<domain> and every server are added",
  "cluster-cidr": "use k3s.clusterCidr",
  "service-cidr": "use k3s.serviceCidr",
  disable: "use k3s.disable",
  "write-kubeconfig-mode": "fmc keeps the admin kubeconfig 0600",
  "https-listen-port": "HAProxy and every join URL reach the servers on 6443",
  "advertise-port": "HAProxy and every join URL reach the servers on 6443",
  "secrets-encryption": "always on",
  "etcd-snapshot-schedule-cron": "use k3s.snapshotSchedule",
  "etcd-snapshot-retention": "use k3s.snapshotRetention",
  config: "fmc writes /etc/rancher/k3s/config.yaml",
};

/** The least memory fmc accepts without a warning for a K3s server (embedded etcd and the control plane). */
const K3S_SERVER_MIN_MIB = 4096;

export function checkK3s(c: Checker, layout: Layout, names: Names): void {
  const { spec, err, warn, explicit } = c;
  const { net } = layout;
  const servers = spec.hosts.filter((h) => h.roles.includes("k3s-server"));
  const agents = spec.hosts.filter((h) => h.roles.includes("k3s-agent"));
  if (servers.length === 0) {
    c.errOf("hosts")("hosts", "no host has role k3s-server", agents.length ? "k3s-agent hosts need at least one k3s-server to join" : "add at least one k3s-server (three for HA)");
  } else if (servers.length % 2 === 0) {
    c.warnOf("hosts")("hosts", `${servers.length} k3s-server hosts: an even count tolerates no more failures than ${servers.length - 1}`, "use an odd number of servers (1, 3, 5) for etcd quorum");
  }
  const apiVip = spec.vips.find((v) => v.name === spec.k3s.apiVip);
  if (!apiVip) err("k3s.apiVip", `no VIP named "${spec.k3s.apiVip}"`, didYouMean(spec.k3s.apiVip, names.vipNames.keys()));
  const clusterCidr = cidrAt(spec.k3s.clusterCidr, "k3s.clusterCidr", err);
  const serviceCidr = cidrAt(spec.k3s.serviceCidr, "k3s.serviceCidr", err);
  if (clusterCidr && serviceCidr && overlaps(clusterCidr, serviceCidr)) err("k3s.serviceCidr", `${spec.k3s.serviceCidr} overlaps k3s.clusterCidr`);
  for (const [cidr, p] of [[clusterCidr, "k3s.clusterCidr"], [serviceCidr, "k3s.serviceCidr"]] as const) {
    if (cidr && net && overlaps(cidr, net)) err(p, `${cidr.text} overlaps network.cidr ${spec.network.cidr}`, "pods and services need their own ranges");
  }
  checkK3sArgs(spec.k3s.serverArgs, "k3s.serverArgs", K3S_SERVER_FLAGS, "server", err);
  checkK3sArgs(spec.k3s.agentArgs, "k3s.agentArgs", K3S_AGENT_FLAGS, "agent", err);
  if (spec.k3s.ingressNodePorts.http === spec.k3s.ingressNodePorts.https) err("k3s.ingressNodePorts", "http and https NodePorts are the same");
  // the install script refuses an unchecked binary: a pre-placed one has no release checksum file to check against
  if (spec.k3s.airgapPath && !spec.k3s.sha256) err("k3s.airgapPath", "a pre-placed k3s binary needs k3s.sha256: fmc never installs a binary it cannot check", "set k3s.sha256 to the binary's SHA-256 (sha256sum-amd64.txt of the release)");
  // the default list disables Traefik, and fmc keeps it when the in-cluster ingress is on (k3sDisabled); a list the spec writes itself is taken at its word
  if (spec.services.ingress.enabled && explicit("k3s.disable") && spec.k3s.disable.includes("traefik")) {
    err("k3s.disable", "traefik is disabled, but services.ingress is K3s's packaged Traefik", "remove traefik from k3s.disable, or set services.ingress.enabled: false");
  }
  for (const [k, p] of Object.entries(spec.k3s.ingressNodePorts)) {
    if (p < 30000 || p > 32767) err(`k3s.ingressNodePorts.${k}`, `${p} is outside the NodePort range 30000-32767`);
  }
  spec.hosts.forEach((h, i) => {
    if ((h.roles.includes("k3s-server") || h.roles.includes("k3s-agent")) && h.os !== "flatcar") {
      warn(`hosts[${i}].os`, `${h.name} runs K3s on ${h.os}: only Flatcar nodes get an Ignition config`);
    }
    // K3s measured 1606 MB for a server with embedded etcd and a workload
    // (docs.k3s.io/reference/resource-profiling); k3d recommends 4 GiB per server of a
    // multi-server cluster (k3d.io/v5.4.1/usage/multiserver): 2 GiB leaves etcd no room.
    if (h.roles.includes("k3s-server") && h.vm && h.vm.memoryMiB < K3S_SERVER_MIN_MIB) {
      warn(`hosts[${i}].vm.memoryMiB`, `${h.name} is a K3s server with ${h.vm.memoryMiB} MiB: K3s measured about 1.6 GB for a server with embedded etcd before anything else runs`, `give servers at least ${K3S_SERVER_MIN_MIB} MiB (docs.k3s.io/reference/resource-profiling)`);
    }
  });
  const pureAgents = agents.filter((h) => !h.roles.includes("k3s-server"));
  if (spec.k3s.serverTaint === true && servers.length && pureAgents.length === 0) {
    warn("k3s.serverTaint", "servers are tainted CriticalAddonsOnly and there is no agent: workloads have nowhere to run", "add k3s-agent hosts, or set k3s.serverTaint: false");
  }
  if (spec.k3s.reboots.coordinator === "none" && spec.hosts.some((h) => h.os === "flatcar" && (h.roles.includes("k3s-server") || h.roles.includes("k3s-agent")))) {
    warn("k3s.reboots.coordinator", "Flatcar applies updates but nothing reboots the nodes into them (REBOOT_STRATEGY=off)", "use coordinator: kured, or reboot the nodes yourself one at a time");
  }
}

function checkK3sArgs(args: Readonly<Record<string, unknown>>, at: string, known: ReadonlySet<string>, kind: "server" | "agent", err: Report) {
  for (const key of Object.keys(args)) {
    const path = `${at}.${key}`;
    const managed = Object.hasOwn(K3S_MANAGED_KEYS, key) ? K3S_MANAGED_KEYS[key] : undefined;
    if (managed) err(path, `fmc sets ${key} itself: ${managed}`, "remove it from the spec");
    else if (!known.has(key)) {
      const serverOnly = kind === "agent" && K3S_SERVER_FLAGS.has(key);
      err(path, serverOnly ? `${key} is a k3s server flag, not an agent flag` : `"${key}" is not a k3s ${kind} flag`, serverOnly ? "put it in k3s.serverArgs" : didYouMean(key, known));
    }
  }
}
