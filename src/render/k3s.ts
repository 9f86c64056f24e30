// K3s config.yaml per node. Only the first server's bootstrap initialises embedded etcd
// (cluster-init); once the cluster exists (ctx.k3sBootstrapped) every server, the first
// included, joins through the API VIP, so a rebuilt first server rejoins instead of
// starting a second cluster. Agents join with their own token, servers may be tainted
// off-limits for workloads, and etcd snapshots may also go to S3.
import { stringify } from "yaml";
import type { Host, Spec } from "../model/schema.js";
import { serverTainted } from "../model/capacity.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER_TEXT, HEADER, lines } from "./types.js";

export const STORAGE_TAINT = "node-role.fmc.dev/storage=true:NoSchedule";
/** The storage host's node label (kured stays off that node: see render/kubernetes.ts). */
export const STORAGE_LABEL = "node-role.fmc.dev/storage";
const LONGHORN_DISK_LABEL = "node.longhorn.io/create-default-disk";
/**
 * The taint K3s documents for servers that run no user workloads ("If you wish to have a
 * dedicated control plane … --node-taint CriticalAddonsOnly=true:NoExecute",
 * docs.k3s.io/datastore/ha, "Launch Server Nodes"); K3s's packaged add-ons tolerate it.
 */
export const SERVER_TAINT = "CriticalAddonsOnly=true:NoExecute";
/** The resolv.conf kubelet hands to pods and CoreDNS: the internal DNS only (it forwards the rest). */
export const K3S_RESOLV_CONF = "/etc/rancher/k3s/resolv.conf";


/**
 * K3s components not deployed: the spec's list, with traefik exactly when the in-cluster
 * ingress (services.ingress, which is K3s's packaged Traefik) is off (a list that names
 * traefik while the ingress is on is refused by fmc validate), plus local-storage when
 * Longhorn is the default StorageClass.
 */
function k3sDisabled(spec: Spec): string[] {
  const out: string[] = spec.k3s.disable.filter((d) => d !== "traefik");
  if (!spec.services.ingress.enabled) out.unshift("traefik");
  // K3s's local-path StorageClass is annotated default; Longhorn's is too: one must go
  if (spec.services.longhorn.enabled && !out.includes("local-storage")) out.push("local-storage");
  return out;
}

/** The server that bootstraps the cluster (cluster-init), or undefined once it exists. */
function bootstrapServer(ctx: ClusterContext): Host | undefined {
  return ctx.k3sBootstrapped ? undefined : ctx.topo.servers[0];
}

/** etcd-s3* keys (k3s-io/k3s pkg/cli/cmds/server.go); the keys come from credentialsFile's environment. */
function etcdS3Config(spec: Spec): Record<string, unknown> {
  const s3 = spec.k3s.etcdS3;
  if (!s3) return {};
  const cfg: Record<string, unknown> = { "etcd-s3": true, "etcd-s3-endpoint": s3.endpoint, "etcd-s3-bucket": s3.bucket };
  if (s3.folder) cfg["etcd-s3-folder"] = s3.folder;
  if (s3.region) cfg["etcd-s3-region"] = s3.region;
  if (s3.endpointCa) cfg["etcd-s3-endpoint-ca"] = s3.endpointCa;
  if (s3.insecure) cfg["etcd-s3-insecure"] = true;
  return cfg;
}

function k3sConfig(ctx: ClusterContext, host: Host): Record<string, unknown> {
  const { spec, topo } = ctx;
  const vip = topo.apiVip.address;
  const isServer = host.roles.includes("k3s-server");
  const labels = Object.entries(host.labels).map(([k, v]) => `${k}=${v}`);
  const taints = [...host.taints];
  if (host.roles.includes("storage")) {
    labels.push(`${LONGHORN_DISK_LABEL}=true`, `${STORAGE_LABEL}=true`);
    taints.push(STORAGE_TAINT);
  }
  if (isServer && serverTainted(spec) && !taints.includes(SERVER_TAINT)) taints.push(SERVER_TAINT);
  const cfg: Record<string, unknown> = {
    "node-name": host.name,
    "node-ip": host.address,
    "resolv-conf": K3S_RESOLV_CONF,
    // servers join with the server token; agents with the agent token, which cannot join a server
    token: ctx.secrets.get(isServer ? "k3s-token" : "k3s-agent-token"),
  };
  if (labels.length) cfg["node-label"] = labels.sort();
  if (taints.length) cfg["node-taint"] = taints.sort();
  if (isServer) {
    if (host.name === bootstrapServer(ctx)?.name) cfg["cluster-init"] = true;
    else cfg.server = `https://${vip}:${spec.loadBalancer.apiPort}`;
    // docs.k3s.io/cli/token "Agent": set on every server, the token agents join with
    cfg["agent-token"] = ctx.secrets.get("k3s-agent-token");
    cfg["tls-san"] = [vip, `api.${spec.domain}`, ...topo.servers.flatMap((s) => [s.address, topo.fqdn(s.name)])];
    cfg["cluster-cidr"] = spec.k3s.clusterCidr;
    cfg["service-cidr"] = spec.k3s.serviceCidr;
    const disable = k3sDisabled(spec);
    if (disable.length) cfg.disable = disable;
    cfg["write-kubeconfig-mode"] = "0600";
    cfg["secrets-encryption"] = true;
    cfg["etcd-snapshot-schedule-cron"] = spec.k3s.snapshotSchedule;
    cfg["etcd-snapshot-retention"] = spec.k3s.snapshotRetention;
    Object.assign(cfg, etcdS3Config(spec));
    Object.assign(cfg, spec.k3s.serverArgs);
  } else {
    cfg.server = `https://${vip}:${spec.loadBalancer.apiPort}`;
    Object.assign(cfg, spec.k3s.agentArgs);
  }
  return Object.fromEntries(Object.entries(cfg).sort(([a], [b]) => a.localeCompare(b)));
}

/** The file; `token` replaces the join token (an agent joining with a bootstrap token, or keeping the one it joined with). */
export function k3sConfigText(ctx: ClusterContext, host: Host, token?: string): string {
  const cfg = k3sConfig(ctx, host);
  if (token !== undefined) cfg.token = token;
  return `# ${HEADER_TEXT}\n${stringify(cfg)}`;
}

/**
 * The config.yaml Ignition writes at first boot. Ignition does not start K3s (the k3s phases
 * enable it, servers one at a time, then agents), but the file is on the node before they
 * run, and must not let the node form or join a cluster by itself: a server's reads as if
 * the cluster existed (it joins through the VIP; only the k3s-servers phase gives the
 * bootstrap server cluster-init, and only until the cluster exists), and an agent's has no
 * token (K3s refuses to start an agent without one; the k3s-agents phase writes the
 * bootstrap token that pins the cluster CA). A server's file is then the phase's own
 * (a re-plan finds nothing to write); an agent's gains its token.
 */
export function k3sFirstBootConfigText(ctx: ClusterContext, host: Host): string {
  const cfg = k3sConfig(ctx.k3sBootstrapped ? ctx : { ...ctx, k3sBootstrapped: true }, host);
  if (!host.roles.includes("k3s-server")) delete cfg.token;
  return `# ${HEADER_TEXT}\n${stringify(cfg)}`;
}

/**
 * kubelet's resolv.conf (K3s resolv-conf): the internal DNS only. The node itself also
 * has the upstream resolvers as a fallback, but CoreDNS forwards to every nameserver in
 * its file at random, so a public one there would answer internal names with NXDOMAIN.
 */
export function k3sResolvConf(ctx: ClusterContext): string {
  return lines(HEADER("#"), ...ctx.topo.dnsServers.map((d) => `nameserver ${d}`), `search ${ctx.spec.domain}`);
}

export function renderK3s(ctx: ClusterContext): Artifact[] {
  return [...ctx.topo.servers, ...ctx.topo.agents].flatMap((h) => [
    { path: `k3s/${h.name}/config.yaml`, content: k3sConfigText(ctx, h), secret: true },
    { path: `k3s/${h.name}/resolv.conf`, content: k3sResolvConf(ctx) },
  ]);
}
