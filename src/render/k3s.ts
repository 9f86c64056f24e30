// K3s config.yaml per node. The first server initialises embedded etcd; every other
// node joins through the API VIP, so no node depends on master1 staying up.
import { stringify } from "yaml";
import type { Host } from "../spec/schema.js";
import type { Artifact, RenderContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";

export const STORAGE_TAINT = "node-role.fmc.dev/storage=true:NoSchedule";
export const LONGHORN_DISK_LABEL = "node.longhorn.io/create-default-disk";

export function k3sConfig(ctx: RenderContext, host: Host): Record<string, unknown> {
  const { spec, topo } = ctx;
  const vip = topo.apiVip.address;
  const isServer = host.roles.includes("k3s-server");
  const labels = Object.entries(host.labels).map(([k, v]) => `${k}=${v}`);
  const taints = [...host.taints];
  if (host.roles.includes("storage")) {
    labels.push(`${LONGHORN_DISK_LABEL}=true`, "node-role.fmc.dev/storage=true");
    taints.push(STORAGE_TAINT);
  }
  const cfg: Record<string, unknown> = {
    "node-name": host.name,
    "node-ip": host.address,
    token: ctx.secrets.get("k3s-token"),
  };
  if (labels.length) cfg["node-label"] = labels.sort();
  if (taints.length) cfg["node-taint"] = taints.sort();
  if (isServer) {
    if (host.name === topo.servers[0]?.name) cfg["cluster-init"] = true;
    else cfg.server = `https://${vip}:${spec.loadBalancer.apiPort}`;
    cfg["tls-san"] = [vip, `api.${spec.domain}`, ...topo.servers.flatMap((s) => [s.address, topo.fqdn(s.name)])];
    cfg["cluster-cidr"] = spec.k3s.clusterCidr;
    cfg["service-cidr"] = spec.k3s.serviceCidr;
    if (spec.k3s.disable.length) cfg.disable = [...spec.k3s.disable];
    cfg["write-kubeconfig-mode"] = "0600";
    cfg["secrets-encryption"] = true;
    cfg["etcd-snapshot-schedule-cron"] = spec.k3s.snapshotSchedule;
    cfg["etcd-snapshot-retention"] = spec.k3s.snapshotRetention;
    Object.assign(cfg, spec.k3s.serverArgs);
  } else {
    cfg.server = `https://${vip}:${spec.loadBalancer.apiPort}`;
    Object.assign(cfg, spec.k3s.agentArgs);
  }
  return Object.fromEntries(Object.entries(cfg).sort(([a], [b]) => a.localeCompare(b)));
}

export function k3sConfigText(ctx: RenderContext, host: Host): string {
  return `# ${HEADER_TEXT}\n${stringify(k3sConfig(ctx, host))}`;
}

export function renderK3s(ctx: RenderContext): Artifact[] {
  return [...ctx.topo.servers, ...ctx.topo.agents].map((h) => ({
    path: `k3s/${h.name}/config.yaml`,
    content: k3sConfigText(ctx, h),
    secret: true,
  }));
}
