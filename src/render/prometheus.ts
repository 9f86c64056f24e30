// prometheus.yml: the scrape jobs for what lives outside the cluster (HAProxy, Traefik,
// node exporters), by address. The same jobs go into the Prometheus chart's
// extraScrapeConfigs; the chart's own jobs cover Kubernetes through service discovery.
import { stringify } from "yaml";
import type { Artifact, RenderContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";

export function staticScrapeJobs(ctx: RenderContext): Array<Record<string, unknown>> {
  const { spec, topo } = ctx;
  const job = (name: string, targets: Array<[string, string]>) => ({
    job_name: name,
    static_configs: targets.map(([target, host]) => ({ targets: [target], labels: { host } })),
  });
  const outside = spec.hosts.filter((h) => !h.roles.includes("k3s-server") && !h.roles.includes("k3s-agent") && !h.roles.includes("gateway"));
  const jobs = [
    job("haproxy", topo.withRole("loadbalancer").map((h) => [`${h.address}:${spec.loadBalancer.metricsPort}`, h.name])),
    job("traefik", topo.withRole("edge").map((h) => [`${h.address}:${spec.edge.metricsPort}`, h.name])),
    job("node-exporter", outside.map((h) => [`${h.address}:9100`, h.name])),
  ];
  return jobs.filter((j) => j.static_configs.length > 0);
}

export function prometheusConfig(ctx: RenderContext): Record<string, unknown> {
  return {
    global: { scrape_interval: "30s", evaluation_interval: "30s", external_labels: { cluster: ctx.spec.name } },
    scrape_configs: [
      { job_name: "prometheus", static_configs: [{ targets: ["localhost:9090"] }] },
      ...staticScrapeJobs(ctx),
    ],
  };
}

export function renderPrometheus(ctx: RenderContext): Artifact[] {
  if (!ctx.spec.services.prometheus.enabled) return [];
  return [{ path: "monitoring/prometheus.yml", content: `# ${HEADER_TEXT}\n${stringify(prometheusConfig(ctx))}` }];
}
