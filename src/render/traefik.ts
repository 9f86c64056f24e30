// Traefik v3 static and dynamic configuration for the edge nodes: TLS on 443 with the
// Cloudflare origin certificate (read as a systemd credential: see traefikUnit in
// edge.ts), 80 redirected, X-Forwarded-For trusted only from the sources the VPS forwards
// (wireguard.forwardFrom), everything forwarded to the API VIP's ingress port where
// HAProxy spreads it over the agents. /ping on the metrics entry point is Keepalived's check.
import { stringify } from "yaml";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";
import { TRAEFIK_CREDENTIALS, traefikCredentialPath } from "./edge.js";

export function traefikStatic(ctx: ClusterContext): Record<string, unknown> {
  const e = ctx.spec.edge;
  return {
    entryPoints: {
      web: { address: ":80", http: { redirections: { entryPoint: { to: "websecure", scheme: "https", permanent: true } } } },
      // Traefik keeps X-Forwarded-* only from trustedIPs and appends the source either way
      websecure: { address: ":443", forwardedHeaders: { trustedIPs: [...(ctx.spec.wireguard?.forwardFrom ?? [])] } },
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

export function traefikDynamic(ctx: ClusterContext): Record<string, unknown> {
  const { spec, topo } = ctx;
  const vip = topo.apiVip.address;
  const origin = { certFile: traefikCredentialPath(TRAEFIK_CREDENTIALS.cert), keyFile: traefikCredentialPath(TRAEFIK_CREDENTIALS.key) };
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
      certificates: [origin],
      // also for clients without SNI, instead of Traefik's self-signed default
      stores: { default: { defaultCertificate: origin } },
      options: { default: { minVersion: "VersionTLS12", sniStrict: false } },
    },
  };
}

export function renderTraefik(ctx: ClusterContext): Artifact[] {
  const head = `# ${HEADER_TEXT}\n`;
  return ctx.topo.withRole("edge").flatMap((h) => [
    { path: `traefik/${h.name}/traefik.yml`, content: head + stringify(traefikStatic(ctx)) },
    { path: `traefik/${h.name}/dynamic/fmc.yml`, content: head + stringify(traefikDynamic(ctx)) },
  ]);
}
