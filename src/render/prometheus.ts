// prometheus.yml: the scrape jobs for what lives outside the cluster (HAProxy, Traefik,
// node exporters), by address. The same jobs go into the Prometheus chart's
// extraScrapeConfigs; the chart's own jobs cover Kubernetes through service discovery.
import { stringify } from "yaml";
import type { Host, Spec } from "../model/schema.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";

/** node_exporter's port, the exporter's default (prometheus/node_exporter, --web.listen-address). */
export const NODE_EXPORTER_PORT = 9100;

/**
 * Hosts whose node_exporter Prometheus scrapes by address: those outside K3s (whose
 * nodes the chart's own node-exporter DaemonSet covers) and inside the LAN (not the
 * VPS). The base phase installs it from the distribution's packages there, so Flatcar
 * hosts, which have none, are left out (the phase says so). None without Prometheus.
 */
export function nodeExporterHosts(spec: Spec): Host[] {
  if (!spec.services.prometheus.enabled) return [];
  return spec.hosts.filter((h) => !h.roles.some((r) => r === "k3s-server" || r === "k3s-agent" || r === "gateway") && h.os !== "flatcar");
}

/** Hosts outside K3s and inside the LAN that get no node_exporter because they run Flatcar. */
export function nodeExporterSkipped(spec: Spec): Host[] {
  if (!spec.services.prometheus.enabled) return [];
  return spec.hosts.filter((h) => !h.roles.some((r) => r === "k3s-server" || r === "k3s-agent" || r === "gateway") && h.os === "flatcar");
}

export function staticScrapeJobs(ctx: ClusterContext): Array<Record<string, unknown>> {
  const { spec, topo } = ctx;
  const job = (name: string, targets: Array<[string, string]>) => ({
    job_name: name,
    static_configs: targets.map(([target, host]) => ({ targets: [target], labels: { host } })),
  });
  const jobs = [
    job("haproxy", topo.withRole("loadbalancer").map((h) => [`${h.address}:${spec.loadBalancer.metricsPort}`, h.name])),
    job("traefik", topo.withRole("edge").map((h) => [`${h.address}:${spec.edge.metricsPort}`, h.name])),
    job("node-exporter", nodeExporterHosts(spec).map((h) => [`${h.address}:${NODE_EXPORTER_PORT}`, h.name])),
  ];
  return jobs.filter((j) => j.static_configs.length > 0);
}

function prometheusConfig(ctx: ClusterContext): Record<string, unknown> {
  return {
    global: { scrape_interval: "30s", evaluation_interval: "30s", external_labels: { cluster: ctx.spec.name } },
    scrape_configs: [
      { job_name: "prometheus", static_configs: [{ targets: ["localhost:9090"] }] },
      ...staticScrapeJobs(ctx),
    ],
  };
}

export function renderPrometheus(ctx: ClusterContext): Artifact[] {
  if (!ctx.spec.services.prometheus.enabled) return [];
  return [{ path: "monitoring/prometheus.yml", content: `# ${HEADER_TEXT}\n${stringify(prometheusConfig(ctx))}` }];
}
