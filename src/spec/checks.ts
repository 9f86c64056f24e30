// Semantic checks on a structurally valid spec. Each check appends problems; none stops
// the others, so one run shows every mistake.
import { existsSync } from "node:fs";
import type { Host, Role, Spec } from "./schema.js";
import { broadcast, contains, isInside, networkOf, overlaps, parseCidr, parseIp, type Cidr } from "./net.js";
import { K3S_AGENT_FLAGS, K3S_SERVER_FLAGS } from "./k3s-flags.js";
import { didYouMean, type Problem } from "../errors.js";
import { longhornCapacity } from "../render/kubernetes.js";
import { LONGHORN_RESERVED_PERCENT } from "../render/storage.js";

/**
 * A problem from checks. `aggregateOf` names the list whose item count the message depends
 * on ("no host has role storage"): when a broken item of that list was dropped to keep
 * checking, the message could be an echo of that item's own error, so it is left out.
 */
export type CheckProblem = Problem & { readonly aggregateOf?: string };

/** config.yaml keys fmc writes itself; serverArgs/agentArgs may not override them. */
export const K3S_MANAGED_KEYS: Readonly<Record<string, string>> = {
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
export const K3S_SERVER_MIN_MIB = 4096;

/** Reads a public-key file named in the spec; returns undefined when it does not exist. */
export type KeyReader = (path: string) => string | undefined;

// the comment is printable text: key files are read from disk, past the spec's own checks
const KEY = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]*)?$/;

export function isPublicKey(text: string): boolean {
  return KEY.test(text.trim());
}

/** The port K3s servers serve the Kubernetes API on, whatever the load balancer's frontend port. */
export const K3S_API_PORT = 6443;

/** Ports each role listens on, for conflict detection: "6443/tcp", what uses it, and the setting that chose it. */
export function rolePorts(spec: Spec, role: Role): Array<[string, string, string?]> {
  const lb = spec.loadBalancer;
  switch (role) {
    case "loadbalancer":
      return [
        [`${lb.apiPort}/tcp`, "HAProxy API frontend", "loadBalancer.apiPort"],
        [`${lb.httpPort}/tcp`, "HAProxy HTTP frontend", "loadBalancer.httpPort"],
        [`${lb.httpsPort}/tcp`, "HAProxy HTTPS frontend", "loadBalancer.httpsPort"],
        [`${lb.statsPort}/tcp`, "HAProxy stats", "loadBalancer.statsPort"],
        [`${lb.metricsPort}/tcp`, "HAProxy metrics", "loadBalancer.metricsPort"],
      ];
    case "edge":
      return [["80/tcp", "Traefik web"], ["443/tcp", "Traefik websecure"], [`${spec.edge.metricsPort}/tcp`, "Traefik metrics", "edge.metricsPort"]];
    case "k3s-server":
      return [[`${K3S_API_PORT}/tcp`, "kube-apiserver"], ["2379/tcp", "etcd client"], ["2380/tcp", "etcd peer"], ...k3sNodePorts(spec)];
    case "k3s-agent":
      return k3sNodePorts(spec);
    case "identity":
      return [
        ["53/udp", "DNS"], ["53/tcp", "DNS"], ["80/tcp", "FreeIPA web UI and enrollment"], ["88/tcp", "Kerberos"], ["88/udp", "Kerberos"],
        ["389/tcp", "LDAP"], ["443/tcp", "FreeIPA web UI"], ["464/tcp", "Kerberos kpasswd"], ["464/udp", "Kerberos kpasswd"], ["636/tcp", "LDAPS"],
      ];
    case "database":
      return [["5432/tcp", "PostgreSQL"]];
    case "storage":
      return [["2049/tcp", "NFS"]];
    case "gateway":
      return [
        [`${spec.wireguard?.port ?? 51820}/udp`, "WireGuard", "wireguard.port"],
        ...(spec.wireguard?.forwardPorts ?? []).map((p, i): [string, string, string] => [`${p}/tcp`, "public port forward", `wireguard.forwardPorts[${i}]`]),
      ];
    case "firewall":
      return [];
  }
}

/** What every K3s node listens on: kubelet, flannel's VXLAN and the ingress NodePorts. */
function k3sNodePorts(spec: Spec): Array<[string, string, string?]> {
  const np = spec.k3s.ingressNodePorts;
  return [["10250/tcp", "kubelet"], ["8472/udp", "flannel VXLAN"], [`${np.http}/tcp`, "ingress NodePort (HTTP)", "k3s.ingressNodePorts.http"], [`${np.https}/tcp`, "ingress NodePort (HTTPS)", "k3s.ingressNodePorts.https"]];
}

/** A name's record inside a DNS zone, relative to it ("@" for the apex); undefined for an address or a name outside the zone. */
export function recordInZone(zone: string, name: string): string | undefined {
  if (parseIp(name) !== undefined) return undefined;
  if (name === zone) return "@";
  return name.endsWith(`.${zone}`) ? name.slice(0, -zone.length - 1) : undefined;
}

/**
 * Mount points that would hide the system's own files (or are the kernel's): data
 * volumes, the database directory and exports go elsewhere.
 */
const SYSTEM_TREES = ["/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr"];
const SYSTEM_DIRS = ["/home", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib", "/var/log"];
export function systemPath(p: string): boolean {
  return SYSTEM_DIRS.includes(p) || SYSTEM_TREES.some((t) => p === t || p.startsWith(`${t}/`));
}

/** Whether a spec path was written by the user (rather than filled in by a default). */
export type Explicit = (path: string) => boolean;

export function semanticProblems(spec: Spec, readKeyFile?: KeyReader, explicit: Explicit = () => true): CheckProblem[] {
  const out: CheckProblem[] = [];
  const err = (path: string, message: string, hint?: string) => out.push({ severity: "error", path, message, hint });
  const warn = (path: string, message: string, hint?: string) => out.push({ severity: "warning", path, message, hint });
  // problems that depend on how many items a list has (see CheckProblem)
  const errOf = (list: string) => (path: string, message: string, hint?: string) => out.push({ severity: "error", path, message, hint, aggregateOf: list });
  const warnOf = (list: string) => (path: string, message: string, hint?: string) => out.push({ severity: "warning", path, message, hint, aggregateOf: list });

  // --- network -------------------------------------------------------------------
  const net = cidrAt(spec.network.cidr, "network.cidr", err);
  if (net && (net.prefix < 8 || net.prefix > 30)) err("network.cidr", `/${net.prefix} is not a usable private network`, "use a prefix from /8 to /30, such as 10.17.0.0/16");
  const subnets: Array<{ name: string; cidr: Cidr; index: number }> = [];
  const subnetNames = new Map<string, number>();
  spec.network.subnets.forEach((s, i) => {
    const path = `network.subnets[${i}]`;
    if (subnetNames.has(s.name)) err(`${path}.name`, `subnet name "${s.name}" is used twice`);
    subnetNames.set(s.name, i);
    const c = cidrAt(s.cidr, `${path}.cidr`, err);
    if (!c) return;
    if (net && !isInside(c, net)) err(`${path}.cidr`, `${s.cidr} is outside network.cidr ${spec.network.cidr}`);
    for (const other of subnets) {
      if (overlaps(c, other.cidr)) err(`${path}.cidr`, `${s.cidr} overlaps subnet "${other.name}" (${other.cidr.text})`);
    }
    if (s.gateway !== undefined) {
      const g = parseIp(s.gateway);
      if (g === undefined) err(`${path}.gateway`, `"${s.gateway}" is not an IPv4 address`);
      else if (!contains(c, g)) err(`${path}.gateway`, `${s.gateway} is outside ${s.cidr}`);
    }
    subnets.push({ name: s.name, cidr: c, index: i });
  });
  const subnetOf = (ip: number) => subnets.find((s) => contains(s.cidr, ip));
  // With a firewall host, it routes between the subnets as every LAN subnet's gateway;
  // the WireGuard tunnel's subnet (the gateway's) is no LAN segment.
  const fwHost = spec.firewall ? spec.hosts.find((h) => h.name === spec.firewall!.host && h.roles.includes("firewall")) : undefined;
  const vpsIp = spec.wireguard ? parseIp(spec.hosts.find((h) => h.roles.includes("gateway"))?.address ?? "") : undefined;
  const tunnelIndex = vpsIp === undefined ? undefined : subnetOf(vpsIp)?.index;
  const isLan = (index: number) => index !== tunnelIndex;
  /** The KVM host's address on a subnet Terraform provides with a firewall: the last usable one. */
  const kvmHostIp = (s: { index: number; cidr: Cidr }) => (fwHost && isLan(s.index) && spec.network.subnets[s.index]!.libvirt !== "none" ? broadcast(s.cidr) - 1 : undefined);
  const explicitGateway = (index: number) => fwHost !== undefined && isLan(index) && spec.network.subnets[index]!.gateway !== undefined;

  // --- hosts ---------------------------------------------------------------------
  const byName = new Map<string, number>();
  const byAddress = new Map<number, string>();
  const hostIps = new Map<string, number>();
  spec.hosts.forEach((h, i) => {
    const path = `hosts[${i}]`;
    if (byName.has(h.name)) err(`${path}.name`, `hostname "${h.name}" is already used by hosts[${byName.get(h.name)}]`);
    else byName.set(h.name, i);
    const dupRoles = h.roles.filter((r, j) => h.roles.indexOf(r) !== j);
    if (dupRoles.length) warn(`${path}.roles`, `role "${dupRoles[0]}" is listed twice`);
    const ip = parseIp(h.address);
    if (ip === undefined) {
      err(`${path}.address`, `"${h.address}" is not an IPv4 address`);
    } else {
      hostIps.set(h.name, ip);
      const owner = byAddress.get(ip);
      if (owner !== undefined) err(`${path}.address`, `${h.address} is already used by ${owner}`);
      else byAddress.set(ip, h.name);
      const s = subnetOf(ip);
      if (!s) {
        errOf("network.subnets")(`${path}.address`, `${h.address} is outside every subnet`, `add a subnet to network.subnets or move ${h.name} into one of: ${subnets.map((x) => `${x.name} ${x.cidr.text}`).join(", ")}`);
      } else if (ip === s.cidr.network || ip === broadcast(s.cidr)) {
        err(`${path}.address`, `${h.address} is the network or broadcast address of subnet "${s.name}"`);
      } else if (!h.roles.includes("firewall") && !(h.roles.includes("gateway") && (!fwHost || !isLan(s.index))) && gatewayIp(spec, s.index, s.cidr) === ip) {
        // an explicit gateway on a host is blamed on the subnet's gateway setting (below)
        if (!explicitGateway(s.index)) err(`${path}.address`, `${h.address} is the gateway of subnet "${s.name}"${fwHost ? `: ${fwHost.name}'s LAN interface holds it` : ""}`, "pick another address or set the subnet's gateway");
      } else if (kvmHostIp(s) === ip) {
        err(`${path}.address`, `${h.address} is the last usable address of subnet "${s.name}": the KVM host (and the lab's hypervisor) holds it to reach the hosts on-link`, "pick another address");
      }
    }
    if (h.publicAddress !== undefined && parseIp(h.publicAddress) === undefined) {
      err(`${path}.publicAddress`, `"${h.publicAddress}" is not an IPv4 address`);
    }
    const home = ip === undefined ? undefined : subnetOf(ip);
    // the firewall VM's NICs are its WAN and LAN sides; its own address may be on wg0
    if (h.vm && home && spec.network.subnets[home.index]!.libvirt === "none" && h !== fwHost) {
      err(`${path}.vm`, `${h.name} is a VM but its subnet "${home.name}" has libvirt: none`, `set network.subnets[${home.index}].libvirt to ${fwHost ? "bridge" : "nat or bridge"}`);
    }
    if (h.vm && h.os === "debian" && h.roles.includes("gateway")) {
      warn(`${path}.vm`, "the gateway is a public VPS; Terraform's libvirt VMs live in the LAN");
    }
    const disks = new Set<string>();
    h.vm?.dataDisks.forEach((d, j) => {
      if (d.name === "root") err(`${path}.vm.dataDisks[${j}].name`, `"root" is the name of ${h.name}'s root volume`, "give the data disk another name");
      else if (disks.has(d.name)) err(`${path}.vm.dataDisks[${j}].name`, `data disk "${d.name}" is listed twice`);
      disks.add(d.name);
    });
    checkPorts(spec, h, path, err, explicit);
  });

  // --- SSH keys ------------------------------------------------------------------
  const globalKeys = checkKeys(spec.ssh.keys, "ssh.keys", readKeyFile, err);
  spec.hosts.forEach((h, i) => {
    const own = checkKeys(h.ssh?.keys ?? [], `hosts[${i}].ssh.keys`, readKeyFile, err);
    if (globalKeys + own === 0 && !spec.ssh.generatedKey) {
      err(`hosts[${i}].ssh.keys`, `no SSH key for ${h.name}: nobody could log in`, "add a key to ssh.keys or set ssh.generatedKey: true");
    }
  });

  // --- VIPs ----------------------------------------------------------------------
  const vipNames = new Map<string, number>();
  const routerIds = new Map<number, string>();
  spec.vips.forEach((v, i) => {
    const path = `vips[${i}]`;
    if (vipNames.has(v.name)) err(`${path}.name`, `VIP name "${v.name}" is used twice`);
    vipNames.set(v.name, i);
    if (byName.has(v.name)) err(`${path}.name`, `VIP name "${v.name}" is also a hostname`);
    if (routerIds.has(v.routerId)) err(`${path}.routerId`, `virtual router id ${v.routerId} is already used by VIP "${routerIds.get(v.routerId)}"`);
    routerIds.set(v.routerId, v.name);
    const ip = parseIp(v.address);
    if (ip === undefined) return err(`${path}.address`, `"${v.address}" is not an IPv4 address`);
    const owner = byAddress.get(ip);
    if (owner !== undefined) {
      err(`${path}.address`, owner.startsWith("VIP ") ? `${v.address} is already used by ${owner}` : `${v.address} is the address of host ${owner}`, "a VIP needs an address nothing else uses");
    }
    byAddress.set(ip, `VIP ${v.name}`);
    const s = subnetOf(ip);
    if (!s) return errOf("network.subnets")(`${path}.address`, `${v.address} is outside every subnet`);
    if (fwHost && isLan(s.index) && !explicitGateway(s.index) && gatewayIp(spec, s.index, s.cidr) === ip) {
      err(`${path}.address`, `${v.address} is the gateway of subnet "${s.name}": ${fwHost.name}'s LAN interface holds it`, "a VIP needs an address nothing else uses");
    } else if (kvmHostIp(s) === ip) {
      err(`${path}.address`, `${v.address} is the last usable address of subnet "${s.name}": the KVM host holds it`, "a VIP needs an address nothing else uses");
    }
    const holders = spec.hosts.filter((h) => h.roles.includes(v.role));
    if (holders.length === 0) errOf("hosts")(`${path}.role`, `no host has role ${v.role} to hold VIP ${v.name}`);
    else if (holders.length === 1) warnOf("hosts")(`${path}.role`, `only ${holders[0]!.name} holds VIP ${v.name}: no failover`);
    for (const h of holders) {
      const hip = hostIps.get(h.name);
      if (hip !== undefined && !contains(s.cidr, hip)) {
        err(`${path}.address`, `${v.address} is in subnet "${s.name}" but holder ${h.name} (${h.address}) is not`, "VRRP moves a VIP only inside the holders' own subnet");
      }
    }
  });
  for (const role of ["loadbalancer", "edge"] as const) {
    if (spec.hosts.some((h) => h.roles.includes(role)) && !spec.vips.some((v) => v.role === role)) {
      warnOf("vips")("vips", `hosts have role ${role} but no VIP has role ${role}`);
    }
  }

  // --- K3s -----------------------------------------------------------------------
  const servers = spec.hosts.filter((h) => h.roles.includes("k3s-server"));
  const agents = spec.hosts.filter((h) => h.roles.includes("k3s-agent"));
  if (servers.length === 0) {
    errOf("hosts")("hosts", "no host has role k3s-server", agents.length ? "k3s-agent hosts need at least one k3s-server to join" : "add at least one k3s-server (three for HA)");
  } else if (servers.length % 2 === 0) {
    warnOf("hosts")("hosts", `${servers.length} k3s-server hosts: an even count tolerates no more failures than ${servers.length - 1}`, "use an odd number of servers (1, 3, 5) for etcd quorum");
  }
  const apiVip = spec.vips.find((v) => v.name === spec.k3s.apiVip);
  if (!apiVip) err("k3s.apiVip", `no VIP named "${spec.k3s.apiVip}"`, didYouMean(spec.k3s.apiVip, vipNames.keys()));
  const clusterCidr = cidrAt(spec.k3s.clusterCidr, "k3s.clusterCidr", err);
  const serviceCidr = cidrAt(spec.k3s.serviceCidr, "k3s.serviceCidr", err);
  if (clusterCidr && serviceCidr && overlaps(clusterCidr, serviceCidr)) err("k3s.serviceCidr", `${spec.k3s.serviceCidr} overlaps k3s.clusterCidr`);
  for (const [c, p] of [[clusterCidr, "k3s.clusterCidr"], [serviceCidr, "k3s.serviceCidr"]] as const) {
    if (c && net && overlaps(c, net)) err(p, `${c.text} overlaps network.cidr ${spec.network.cidr}`, "pods and services need their own ranges");
  }
  checkK3sArgs(spec.k3s.serverArgs, "k3s.serverArgs", K3S_SERVER_FLAGS, "server", err);
  checkK3sArgs(spec.k3s.agentArgs, "k3s.agentArgs", K3S_AGENT_FLAGS, "agent", err);
  if (spec.k3s.ingressNodePorts.http === spec.k3s.ingressNodePorts.https) err("k3s.ingressNodePorts", "http and https NodePorts are the same");
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

  // --- references to hosts by role -------------------------------------------------
  const needHost = (path: string, name: string, role: Role) => {
    const i = byName.get(name);
    if (i === undefined) return err(path, `no host named "${name}"`, didYouMean(name, byName.keys()));
    if (!spec.hosts[i]!.roles.includes(role)) err(path, `host ${name} does not have role ${role}`, `add ${role} to hosts[${i}].roles`);
  };

  // --- storage -------------------------------------------------------------------
  const st = spec.storage;
  const exportPaths = new Set(st?.exports.map((e) => e.path) ?? []);
  if (st) {
    needHost("storage.host", st.host, "storage");
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
      if (e.options.includes("no_root_squash")) {
        const wide = e.clients.filter((c) => c === "*" || (c.includes("/") && Number(c.split("/")[1]) < 16));
        if (wide.length) warn(`storage.exports[${i}].options`, `no_root_squash for ${wide.join(", ")}: root on any of those machines is root on ${e.path}`, "list the clients that need it, or use root_squash");
      }
      if (!st.volumes.some((v) => e.path === v.mount || e.path.startsWith(`${v.mount}/`))) {
        warn(`storage.exports[${i}].path`, `${e.path} is not on any storage volume: it lives on the root disk`);
      }
      e.clients.forEach((c, j) => {
        const ok = c.includes("/") ? typeof parseCidr(c) === "object" : parseIp(c) !== undefined;
        if (!ok) err(`storage.exports[${i}].clients[${j}]`, `"${c}" is not an IPv4 address or CIDR`);
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
    errOf("hosts")("services.longhorn", "Longhorn is enabled but no host has role storage", "add role storage to a host or set services.longhorn.enabled: false");
  }
  if (spec.services.longhorn.enabled && st) checkLonghornCapacity(spec, errOf("hosts"), warnOf("hosts"));
  if (spec.services.nfsCsi.enabled && !st) err("services.nfsCsi", "the NFS StorageClass is enabled but there is no storage section");
  for (const [svc, chart] of Object.entries(spec.services)) {
    // the ingress (K3s's Traefik) and Kibana (an ECK resource) have no volumes of their own
    if (!chart.enabled || !("storageClass" in chart) || !chart.storageClass) continue;
    const backing = chart.storageClass === "longhorn" ? spec.services.longhorn : spec.services.nfsCsi;
    if (!backing.enabled) err(`services.${svc}.storageClass`, `${chart.storageClass} is used but its provider is disabled`);
  }

  // --- database ------------------------------------------------------------------
  const db = spec.database;
  if (db) {
    needHost("database.host", db.host, "database");
    if (systemPath(db.dataDir)) err("database.dataDir", `${db.dataDir} is a system directory`, "use a directory of its own, such as /var/lib/pgsql");
    if (db.nfsExport !== undefined) {
      const exp = st?.exports.find((e) => e.path === db.nfsExport);
      if (!exp) {
        err("database.nfsExport", `PostgreSQL data on NFS needs the export ${db.nfsExport}, which storage.exports does not have`, didYouMean(db.nfsExport, exportPaths));
      } else {
        const dbIp = hostIps.get(db.host);
        const allowed = exp.clients.some((c) => {
          const cidr = parseCidr(c.includes("/") ? c : `${c}/32`);
          return typeof cidr === "object" && dbIp !== undefined && contains(cidr, dbIp);
        });
        if (dbIp !== undefined && !allowed) err("database.nfsExport", `export ${exp.path} does not allow ${db.host} (${spec.hosts[byName.get(db.host)!]!.address})`);
      }
    }
  }

  // --- identity, WireGuard, firewall ---------------------------------------------
  if (spec.identity) needHost("identity.host", spec.identity.host, "identity");
  const wg = spec.wireguard;
  if (wg) {
    needHost("wireguard.lanPeer", wg.lanPeer, "firewall");
    if (spec.hosts.find((h) => h.name === wg.lanPeer)?.roles.includes("gateway")) err("wireguard.lanPeer", `${wg.lanPeer} is the gateway too: the tunnel needs two ends`, "the LAN peer is the firewall inside the LAN; the gateway is the VPS");
    const gws = spec.hosts.filter((h) => h.roles.includes("gateway"));
    if (gws.length !== 1) errOf("hosts")("wireguard", `WireGuard needs exactly one host with role gateway (the VPS); found ${gws.length}`);
    else if (!gws[0]!.publicAddress) {
      if (wg.endpoint === undefined) err(`hosts[${byName.get(gws[0]!.name)}].publicAddress`, "the gateway has no publicAddress and wireguard.endpoint is not set: the LAN peer has nothing to dial", "give the VPS its publicAddress");
      else warn(`hosts[${byName.get(gws[0]!.name)}].publicAddress`, "the gateway has no publicAddress; Cloudflare records need one");
    }
  } else if (spec.hosts.some((h) => h.roles.includes("gateway"))) {
    errOf("hosts")("wireguard", "a host has role gateway but there is no wireguard section");
  }
  const fw = spec.firewall;
  if (fw) {
    needHost("firewall.host", fw.host, "firewall");
    const names = [...subnetNames.keys(), ...byName.keys(), ...vipNames.keys(), "any"];
    const checkRef = (path: string, ref: string) => {
      if (names.includes(ref)) return;
      if (/^\d/.test(ref)) {
        const c = ref.includes("/") ? parseCidr(ref) : parseIp(ref);
        if (c === undefined) err(path, `"${ref}" is not an IPv4 address or CIDR`);
        else if (typeof c === "string") err(path, `${ref}: ${c}`);
        return;
      }
      err(path, `"${ref}" is not a subnet, host, VIP, CIDR or any`, didYouMean(ref, names));
    };
    fw.rules.forEach((r, i) => {
      for (const side of ["from", "to"] as const) checkRef(`firewall.rules[${i}].${side}`, r[side]);
      if ((r.protocol === "icmp" || r.protocol === "any") && r.ports.length) err(`firewall.rules[${i}].ports`, `ports make no sense for protocol ${r.protocol}`);
    });
    fw.management.forEach((ref, i) => checkRef(`firewall.management[${i}]`, ref));
    const ifaces = new Map<string, number>();
    spec.network.subnets.forEach((s, i) => {
      if (!s.firewallInterface) return;
      if (s.firewallInterface === fw.wanInterface) err(`network.subnets[${i}].firewallInterface`, `${s.firewallInterface} is the firewall's WAN interface`);
      if (ifaces.has(s.firewallInterface)) err(`network.subnets[${i}].firewallInterface`, `${s.firewallInterface} is already the firewall's interface on ${spec.network.subnets[ifaces.get(s.firewallInterface)!]!.name}`);
      ifaces.set(s.firewallInterface, i);
    });
    const fwdPorts = new Set<string>();
    fw.portForwards.forEach((f, i) => {
      if (!byName.has(f.to) && !vipNames.has(f.to)) err(`firewall.portForwards[${i}].to`, `"${f.to}" is not a host or VIP`, didYouMean(f.to, [...byName.keys(), ...vipNames.keys()]));
      const key = `${f.port}/${f.protocol}`;
      if (fwdPorts.has(key)) err(`firewall.portForwards[${i}].port`, `${key} is forwarded twice`);
      fwdPorts.add(key);
    });
  }
  routedLayoutProblems();
  if (spec.cloudflare && !spec.wireguard) warn("cloudflare", "Cloudflare records point at the gateway, but there is no wireguard section");
  const records = new Set<string>();
  spec.cloudflare?.records.forEach((r, i) => {
    if (records.has(r.name)) err(`cloudflare.records[${i}].name`, `record ${r.name} is listed twice`);
    records.add(r.name);
  });
  const endpoint = wg?.endpoint;
  if (endpoint !== undefined && parseIp(endpoint) === undefined) {
    const inZone = spec.cloudflare ? recordInZone(spec.cloudflare.zone, endpoint) : undefined;
    const listed = inZone === undefined ? -1 : spec.cloudflare!.records.findIndex((r) => r.name === inZone);
    if (inZone === undefined) {
      const why = spec.cloudflare ? `it is not in the Cloudflare zone ${spec.cloudflare.zone}` : "there is no cloudflare section";
      warn("wireguard.endpoint", `fmc creates no DNS record for ${endpoint} (${why}): it must resolve to the gateway's public address, unproxied`, "or use a name in cloudflare.zone, or the address itself");
    } else if (listed >= 0 && spec.cloudflare!.records[listed]!.proxied) {
      err(`cloudflare.records[${listed}].proxied`, `${endpoint} is wireguard.endpoint: a proxied record carries only HTTP(S), never WireGuard's UDP`, "set proxied: false, or leave the record out (fmc renders the endpoint's DNS-only record)");
    }
  }
  // Cross-subnet rules hold only where one host routes and filters between the subnets:
  // every LAN subnet's gateway must be the firewall's interface on it, reached on a bridge.
  function routedLayoutProblems() {
    const fw = spec.firewall;
    if (!fw) return;
    if (!fwHost) {
      const cross = fw.rules.map((r, i) => ({ r, i })).filter(({ r }) => crossesSubnets(r.from, r.to));
      if (cross.length) {
        const { r, i } = cross[0]!;
        errOf("hosts")("firewall.rules", `${cross.length === 1 ? "a rule crosses" : `${cross.length} rules cross`} subnets (firewall.rules[${i}]: ${r.from} to ${r.to}) but no host has role firewall to route between them and enforce it`, `give ${fw.host} role firewall, or remove the rules between subnets`);
      }
      return;
    }
    const fi = spec.hosts.indexOf(fwHost);
    spec.network.subnets.forEach((s, i) => {
      const path = `network.subnets[${i}]`;
      if (s.libvirt === "nat") {
        err(`${path}.libvirt`, `a libvirt nat network makes the KVM host the gateway of "${s.name}" (and it rejects inbound traffic), so ${fwHost.name} could not enforce the rules between subnets`, `use libvirt: bridge: fmc renders an isolated network whose gateway is ${fwHost.name}'s interface`);
      }
      const c = subnets.find((x) => x.index === i);
      if (!c || !isLan(i)) return;
      if (s.libvirt !== "none" && c.cidr.prefix > 29) err(`${path}.cidr`, `${s.cidr} is too small for a libvirt network (at least a /29): it needs ${fwHost.name}'s gateway, the KVM host's last address and the hosts`);
      const g = s.gateway === undefined ? undefined : parseIp(s.gateway);
      if (g === undefined || !contains(c.cidr, g)) return;
      const owner = byAddress.get(g);
      if (owner !== undefined && owner !== fwHost.name) {
        err(`${path}.gateway`, `${s.gateway} is the address of ${owner.startsWith("VIP ") ? owner : `host ${owner}`}, but the gateway of "${s.name}" is ${fwHost.name}'s interface there`, `leave gateway out (${fwHost.name} takes the first address) or pick an address nothing else uses`);
      } else if (g === kvmHostIp(c)) {
        err(`${path}.gateway`, `${s.gateway} is the last usable address of "${s.name}", which the KVM host holds`, "leave gateway out or pick another address");
      }
    });
    const lans = spec.network.subnets.map((s, i) => ({ s, i })).filter(({ i }) => isLan(i));
    if (fwHost.vm) {
      if (fwHost.os === "flatcar") err(`hosts[${fi}].os`, `the firewall VM's interfaces are configured by cloud-init, which Flatcar does not run: ${fwHost.name} would have no LAN side`, "use debian or almalinux for the firewall");
      const others = [...byAddress].filter(([, owner]) => owner !== fwHost.name).map(([ip]) => ip);
      for (const { s, i } of lans) {
        const c = subnets.find((x) => x.index === i);
        if (s.libvirt === "none" && c && others.some((ip) => contains(c.cidr, ip))) warn(`network.subnets[${i}].libvirt`, `${fwHost.name} is a VM but Terraform gives it no interface on "${s.name}" (libvirt: none): nothing routes that subnet`, "set libvirt: bridge");
      }
    } else if (lans.some(({ s }) => s.libvirt !== "none") && spec.hosts.some((h) => h.vm)) {
      warn(`hosts[${fi}]`, `${fwHost.name} is not a VM: Terraform's LAN networks are isolated bridges on the KVM host (fmc1-…), which reach it only if you add its LAN ports to them`, `give ${fwHost.name} a vm section to have it created with one NIC per subnet`);
    }
  }

  /** Whether a rule's two ends can lie in different subnets (any, a CIDR across subnets, or two subnets). */
  function crossesSubnets(from: string, to: string): boolean {
    const a = subnetOfRef(from);
    const b = subnetOfRef(to);
    return a === undefined || b === undefined || a !== b;
  }
  function subnetOfRef(ref: string): number | undefined {
    if (subnetNames.has(ref)) return subnetNames.get(ref);
    const ip = hostIps.get(ref) ?? (vipNames.has(ref) ? parseIp(spec.vips[vipNames.get(ref)!]!.address) : undefined);
    if (ip !== undefined) return subnetOf(ip)?.index;
    const c = ref === "any" ? undefined : parseCidr(ref.includes("/") ? ref : `${ref}/32`);
    return typeof c === "object" ? subnets.find((s) => isInside(c, s.cidr))?.index : undefined;
  }

  // rendered file names that must not meet: the reverse zone, HelmChart files
  if (/(^|\.)arpa$/.test(spec.domain)) err("domain", `${spec.domain} is a reverse-DNS name`, "use the internal domain, such as microcloud.lan");
  const charts = new Map<string, string>();
  for (const [svc, chart] of Object.entries(spec.services)) {
    if (!chart.enabled || !("chart" in chart)) continue;
    const other = charts.get(chart.chart);
    if (other) err(`services.${svc}.chart`, `chart ${chart.chart} is also installed by services.${other}`, "each service needs its own chart (its HelmChart is named after it)");
    charts.set(chart.chart, svc);
  }
  return out;
}

function gatewayIp(spec: Spec, index: number, cidr: Cidr): number {
  const g = spec.network.subnets[index]?.gateway;
  return g !== undefined ? (parseIp(g) ?? -1) : cidr.network + 1;
}

/**
 * Parses a CIDR, reporting a bad one. A CIDR with host bits set is reported once and then
 * used as the network it names, so the hosts inside it don't each get an echo error.
 */
function cidrAt(text: string, path: string, err: (p: string, m: string, h?: string) => void): Cidr | undefined {
  const c = parseCidr(text);
  if (c === undefined) {
    err(path, `"${text}" is not an IPv4 CIDR`, "write it like 10.17.4.0/24");
    return undefined;
  }
  if (typeof c === "string") {
    err(path, `${text}: ${c}`);
    return networkOf(text);
  }
  return c;
}

function checkK3sArgs(
  args: Readonly<Record<string, unknown>>,
  at: string,
  known: ReadonlySet<string>,
  kind: "server" | "agent",
  err: (p: string, m: string, h?: string) => void,
) {
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

function checkKeys(keys: readonly string[], path: string, read: KeyReader | undefined, err: (p: string, m: string, h?: string) => void): number {
  let n = 0;
  keys.forEach((k, i) => {
    if (isPublicKey(k)) return void n++;
    if (/^(~|\.|\/)/.test(k)) {
      let text: string | undefined;
      try {
        text = read ? read(k) : existsSync(k) ? "" : undefined;
      } catch (e) {
        return void err(`${path}[${i}]`, (e as Error).message, (e as { hint?: string }).hint);
      }
      if (text === undefined) err(`${path}[${i}]`, `key file ${k} does not exist`);
      else if (read && !text.split("\n").some((l) => isPublicKey(l))) err(`${path}[${i}]`, `${k} holds no OpenSSH public key`);
      else n++;
      return;
    }
    err(`${path}[${i}]`, "not an OpenSSH public key or a path to one", 'expected "ssh-ed25519 AAAA… comment" or "~/.ssh/id_ed25519.pub"');
  });
  return n;
}

/**
 * Two listeners on one port. Within one role it is a setting that clashes (blamed on that
 * setting, once for the whole spec); across roles it is the host's roles that clash.
 */
function checkPorts(spec: Spec, h: Host, path: string, err: (p: string, m: string, h?: string) => void, explicit: Explicit) {
  const used = new Map<string, { what: string; role: Role; at?: string }>();
  for (const role of new Set(h.roles)) {
    for (const [port, what, at] of rolePorts(spec, role)) {
      const prev = used.get(port);
      if (!prev) used.set(port, { what, role, at });
      else if (prev.what === what) continue;
      else if (prev.role === role) {
        // blame the setting the user wrote, not the one left at its default
        const blamed = at && explicit(at) ? at : prev.at && explicit(prev.at) ? prev.at : (at ?? prev.at ?? `${path}.roles`);
        err(blamed, `port ${port} is used by both ${prev.what} and ${what}`, "give each its own port");
      }
      else err(`${path}.roles`, `port ${port} on ${h.name} is used by both ${prev.what} and ${what}`, "put these roles on different hosts");
    }
  }
}

/**
 * Longhorn's schedulable space against the volumes the charts request: each node's disk
 * minus the reserved share, each volume's replicas on different nodes. More than fits
 * is an error: Longhorn would leave replicas unscheduled and the volumes would not attach.
 */
function checkLonghornCapacity(spec: Spec, err: (p: string, m: string, h?: string) => void, warn: (p: string, m: string, h?: string) => void) {
  const cap = longhornCapacity(spec);
  const gib = (n: number) => `${Number(n.toFixed(1))} GiB`;
  const nodes = cap.disks.length;
  const explicit = spec.storage?.longhornReplicas;
  if (explicit !== undefined && explicit > nodes) {
    return err("storage.longhornReplicas", `${explicit} replicas need ${explicit} nodes with a Longhorn disk; the spec has ${nodes}${nodes ? ` (${cap.disks.map((d) => d.host).join(", ")})` : ""}`, "give more K3s agents a data disk (hosts[].vm.dataDisks), or lower storage.longhornReplicas");
  }
  if (!cap.claims.length) return;
  const requested = `the charts request ${gib(cap.requestedGiB)} (${cap.claims.map((c) => `${c.what} ${c.count} × ${gib(c.sizeGiB)}`).join(", ")})`;
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
  }
  if (cap.replicas === 1) warn("storage.longhornReplicas", `Longhorn keeps 1 replica of each volume: losing ${nodes === 1 ? cap.disks[0]!.host : "a node"} loses the volumes on it`, "give a second K3s agent a data disk; fmc then uses 2 replicas");
}
