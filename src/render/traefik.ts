// Traefik v3 static and dynamic configuration for the edge nodes: TLS on 443 with the
// Cloudflare origin certificate, 80 redirected, everything forwarded to the API VIP's
// ingress port where HAProxy spreads it over the agents.
import { stringify } from "yaml";
import type { Artifact, RenderContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";

export function traefikStatic(ctx: RenderContext): Record<string, unknown> {
  const e = ctx.spec.edge;
  return {
    entryPoints: {
      web: { address: ":80", http: { redirections: { entryPoint: { to: "websecure", scheme: "https", permanent: true } } } },
      websecure: { address: ":443" },
      metrics: { address: `:${e.metricsPort}` },
    },
    providers: { file: { directory: "/etc/traefik/dynamic", watch: true } },
    api: { dashboard: false },
    ping: { entryPoint: "metrics" },
    metrics: { prometheus: { entryPoint: "metrics" } },
    log: { level: "INFO" },
    accessLog: {},
    global: { checkNewVersion: false, sendAnonymousUsage: false },
  };
}

export function traefikDynamic(ctx: RenderContext): Record<string, unknown> {
  const { spec, topo } = ctx;
  const vip = topo.apiVip.address;
  return {
    http: {
      routers: {
        "cluster-ingress": {
          entryPoints: ["websecure"],
          rule: "PathPrefix(`/`)",
          priority: 1,
          service: "cluster-ingress",
          tls: {},
        },
      },
      services: {
        "cluster-ingress": {
          loadBalancer: {
            passHostHeader: true,
            servers: [{ url: `http://${vip}:${spec.loadBalancer.httpPort}` }],
          },
        },
      },
    },
    tls: {
      certificates: [{ certFile: spec.edge.certFile, keyFile: spec.edge.keyFile }],
      options: { default: { minVersion: "VersionTLS12", sniStrict: false } },
    },
  };
}

export function renderTraefik(ctx: RenderContext): Artifact[] {
  const head = `# ${HEADER_TEXT}\n`;
  return ctx.topo.withRole("edge").flatMap((h) => [
    { path: `traefik/${h.name}/traefik.yml`, content: head + stringify(traefikStatic(ctx)) },
    { path: `traefik/${h.name}/dynamic/fmc.yml`, content: head + stringify(traefikDynamic(ctx)) },
  ]);
}
