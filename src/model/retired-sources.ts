// Chart repositories, charts and image registries that no longer get releases or whose
// pinned artifacts no longer pull. A spec that installs from one of them is refused
// (services in schema.ts), and the tests fail when a chart fmc pins, or an image one of
// those charts or fmc's values name, is on this list. Each entry says since when and
// where that was announced, so the list can be checked and extended.

export interface RetiredSource {
  /** What is retired, in words. */
  readonly what: string;
  /** The date it stopped (YYYY-MM-DD or YYYY-MM). */
  readonly since: string;
  /** The announcement. */
  readonly see: string;
  /** What to use instead. */
  readonly instead: string;
  /** Chart repositories (URL prefixes, compared without a trailing slash) and, optionally, only these charts in them. */
  readonly charts?: ReadonlyArray<{ readonly repo: string; readonly names?: readonly string[] }>;
  /** Image reference prefixes (registry/namespace/), matched after normalising Docker Hub short names. */
  readonly images?: readonly string[];
}

export const RETIRED_SOURCES: readonly RetiredSource[] = [
  {
    what: "Bitnami's public catalogue: versioned images left docker.io/bitnami for the unmaintained bitnamilegacy, and the charts point at images that no longer pull",
    since: "2025-08-28",
    see: "https://github.com/bitnami/charts/issues/35164",
    instead: "a chart whose images come from the project itself (Strimzi for Kafka, redis-ha on the official redis image)",
    charts: [{ repo: "oci://registry-1.docker.io/bitnamicharts" }, { repo: "https://charts.bitnami.com/bitnami" }],
    images: ["docker.io/bitnami/", "docker.io/bitnamilegacy/"],
  },
  {
    what: "the community ingress-nginx controller: no releases, bug fixes or security patches",
    since: "2026-03",
    see: "https://kubernetes.io/blog/2025/11/11/ingress-nginx-retirement/",
    instead: "K3s's packaged Traefik (services.ingress)",
    charts: [{ repo: "https://kubernetes.github.io/ingress-nginx" }],
    images: ["registry.k8s.io/ingress-nginx/"],
  },
  {
    what: "Elastic's Helm charts for the stack (last release 8.5.1, repository archived; their generated certificate is never renewed)",
    since: "2022-11-16",
    see: "https://github.com/elastic/helm-charts/issues/1731",
    instead: "ECK: the eck-operator chart with Elasticsearch and Kibana resources",
    charts: [{ repo: "https://helm.elastic.co", names: ["elasticsearch", "kibana", "logstash", "filebeat", "metricbeat", "apm-server"] }],
  },
  {
    what: "the Grafana chart in grafana/helm-charts (frozen and marked deprecated; maintenance moved to grafana-community)",
    since: "2026-01-30",
    see: "https://github.com/grafana/helm-charts/issues/4087",
    instead: "https://grafana-community.github.io/helm-charts, chart grafana",
    charts: [{ repo: "https://grafana.github.io/helm-charts", names: ["grafana"] }],
  },
];

const trimSlash = (s: string) => s.replace(/\/+$/, "");

/** The retired source a chart comes from, if any. */
export function retiredChart(repo: string, chart: string): RetiredSource | undefined {
  const r = trimSlash(repo);
  return RETIRED_SOURCES.find((s) => s.charts?.some((c) => (r === trimSlash(c.repo) || r.startsWith(`${trimSlash(c.repo)}/`)) && (!c.names || c.names.includes(chart))));
}

/** An image reference with Docker Hub's implied registry and library/ namespace spelled out. */
export function normalImage(ref: string): string {
  const first = ref.split("/")[0]!;
  const hasRegistry = ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  const full = hasRegistry ? ref : `docker.io/${ref.includes("/") ? ref : `library/${ref}`}`;
  return full.replace(/^(index\.docker\.io|registry-1\.docker\.io)\//, "docker.io/");
}

/** The retired source an image comes from, if any. */
export function retiredImage(ref: string): RetiredSource | undefined {
  const img = normalImage(ref);
  return RETIRED_SOURCES.find((s) => s.images?.some((p) => img.startsWith(p)));
}

/** One line for an error message: what, since when, what instead. */
export function retiredText(s: RetiredSource): string {
  return `${s.what} (retired ${s.since}, ${s.see}); use ${s.instead}`;
}
