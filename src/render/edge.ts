// The edge proxy's files: HAProxy in HTTP mode (edge.engine haproxy) and the Traefik
// systemd unit (edge.engine traefik; its static and dynamic config are in traefik.ts).
// Both terminate TLS for the public names with the origin certificate, redirect :80 to
// https, trust X-Forwarded-For only from the sources the VPS forwards (wireguard.
// forwardFrom: Cloudflare's edges, through the tunnel) and send plain HTTP to the API
// VIP's httpPort, where the load balancers spread it over the agents. Each answers
// `GET /ping` on the host address at edge.metricsPort: Keepalived's health check.
import type { Host } from "../model/schema.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER, lines } from "./types.js";
import { configWord, systemdPath } from "./quote.js";
import { haproxyGlobal } from "./haproxy.js";
import { specFamily } from "../hosts/os.js";
import type { OsFamilyName } from "../hosts/facts.js";

const word = (v: string) => configWord("haproxy.cfg", v);

/** Where the edge HAProxy reads its certificate bundle and the trusted forwarders. */
export interface EdgePaths {
  /** Certificate and key in one PEM file (0600). */
  readonly bundle: string;
  /** One CIDR a line: sources whose X-Forwarded-For is kept. */
  readonly forwarders: string;
}

export const EDGE_PATHS: EdgePaths = {
  bundle: "/etc/haproxy/certs/origin.pem",
  forwarders: "/etc/haproxy/forwarders.acl",
};

/** The sources whose X-Forwarded-For the edge keeps: empty without a tunnel (trust nobody). */
export function forwardersList(ctx: ClusterContext): string {
  const from = ctx.spec.wireguard?.forwardFrom ?? [];
  return lines(HEADER("#"), ...from.map(word));
}

/** HAProxy's crt file: the certificate (chain) followed by its key. */
export function certBundle(cert: string, key: string): string {
  return `${cert.trim()}\n${key.trim()}\n`;
}

export function edgeHaproxyConfig(ctx: ClusterContext, host: Host, paths: EdgePaths = EDGE_PATHS, family: OsFamilyName = specFamily(host.os)): string {
  const { spec, topo } = ctx;
  const lb = spec.loadBalancer;
  // one server (the VIP): checked, but back within about two seconds once it answers again
  const check = `check inter ${lb.check.interMs}ms fastinter 500ms downinter 1s fall ${lb.check.fall} rise ${lb.check.rise}`;
  return lines(
    HEADER("#"),
    ...haproxyGlobal(ctx, family, "ssl-default-bind-options ssl-min-ver TLSv1.2"),
    "defaults",
    "    mode http",
    "    log global",
    "    option httplog",
    "    option dontlognull",
    "    timeout connect 5s",
    "    timeout client 60s",
    "    timeout server 60s",
    "    timeout http-request 10s",
    "    # websockets and other upgraded connections",
    "    timeout tunnel 1h",
    "",
    "frontend http",
    "    bind :80",
    "    http-request redirect scheme https code 301",
    "",
    "frontend https",
    `    bind :443 ssl crt ${word(paths.bundle)} alpn h2,http/1.1`,
    "    # X-Forwarded-For is kept only from the sources the VPS forwards (wireguard.forwardFrom);",
    "    # from anyone else it is replaced by the TCP source. Either way the source is appended.",
    `    acl from_forwarders src -f ${word(paths.forwarders)}`,
    "    http-request del-header X-Forwarded-For unless from_forwarders",
    "    option forwardfor",
    "    http-request set-header X-Forwarded-Proto https",
    "    default_backend cluster-ingress",
    "",
    "backend cluster-ingress",
    "    # plain HTTP to the load balancers' VIP; an answer below 500 means the ingress is there",
    "    option httpchk GET /",
    "    http-check expect ! rstatus ^5",
    `    server ${word(topo.apiVip.name)} ${word(topo.apiVip.address)}:${lb.httpPort} ${check}`,
    "",
    "frontend health",
    `    bind ${word(host.address)}:${spec.edge.metricsPort}`,
    "    # Keepalived's check of this HAProxy (answered before any rule below)",
    "    monitor-uri /ping",
    "    http-request use-service prometheus-exporter if { path /metrics }",
    "    http-request deny",
  );
}

/** Where the Traefik binary lives: /usr/local/bin, or /opt/bin on Flatcar (/usr is read-only). */
export const traefikBinaryPath = (flatcar: boolean) => (flatcar ? "/opt/bin/traefik" : "/usr/local/bin/traefik");
export const TRAEFIK_STATIC = "/etc/traefik/traefik.yml";
export const TRAEFIK_DYNAMIC = "/etc/traefik/dynamic/fmc.yml";
/** Traefik reads the certificate and key as systemd credentials: it runs as a dynamic user. */
export const TRAEFIK_CREDENTIALS = { cert: "origin.pem", key: "origin-key.pem" } as const;
export const traefikCredentialPath = (name: string) => `/run/credentials/traefik.service/${name}`;

/**
 * traefik.service: an unprivileged dynamic user with only CAP_NET_BIND_SERVICE; the
 * origin key stays root-only on disk and reaches Traefik through LoadCredential= (copied
 * at start, so a new certificate needs a restart, which the edge phase does).
 */
export function traefikUnit(ctx: ClusterContext, binary: string): string {
  const e = ctx.spec.edge;
  return lines(
    HEADER("#"),
    "[Unit]",
    "Description=Traefik edge proxy",
    "Documentation=https://doc.traefik.io/traefik/",
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${systemdPath(binary)} --configFile=${TRAEFIK_STATIC}`,
    "DynamicUser=yes",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    `LoadCredential=${TRAEFIK_CREDENTIALS.cert}:${systemdPath(e.certFile)}`,
    `LoadCredential=${TRAEFIK_CREDENTIALS.key}:${systemdPath(e.keyFile)}`,
    "LimitNOFILE=65536",
    "Restart=always",
    "RestartSec=1",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
  );
}

/** The edge files `fmc render` shows (the certificate is not rendered: it is not in the spec). */
export function renderEdge(ctx: ClusterContext): Artifact[] {
  const edges = ctx.topo.withRole("edge");
  if (ctx.spec.edge.engine === "haproxy") {
    return edges.flatMap((h) => [
      { path: `edge/${h.name}/haproxy.cfg`, content: edgeHaproxyConfig(ctx, h) },
      { path: `edge/${h.name}/forwarders.acl`, content: forwardersList(ctx) },
    ]);
  }
  return edges.map((h) => ({ path: `traefik/${h.name}/traefik.service`, content: traefikUnit(ctx, traefikBinaryPath(h.os === "flatcar")) }));
}
