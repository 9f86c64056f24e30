// Internal DNS: forward and reverse zone files (bind9 syntax, importable into FreeIPA)
// and the FreeIPA server/client install scripts for the AlmaLinux hosts. Passwords are
// read from files that `fmc apply` places with mode 0600; they never appear here.
import { createHash } from "node:crypto";
import type { Artifact, RenderContext } from "./types.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { cidrOf, ipOf, reverseLabel } from "../spec/net.js";
import { sh, zoneName } from "./quote.js";

interface Rec {
  readonly name: string;
  readonly type: "A" | "CNAME";
  readonly value: string;
}

/** Service names that resolve to the ingress VIP, plus role aliases. */
export function dnsRecords(ctx: RenderContext): Rec[] {
  const { spec, topo } = ctx;
  const recs: Rec[] = spec.hosts.map((h) => ({ name: h.name, type: "A", value: h.address }));
  for (const v of spec.vips) recs.push({ name: v.name, type: "A", value: v.address });
  if (spec.vips.some((v) => v.name === spec.k3s.apiVip)) {
    recs.push({ name: "ingress", type: "A", value: topo.apiVip.address });
    if (spec.k3s.apiVip !== "api") recs.push({ name: "api", type: "CNAME", value: spec.k3s.apiVip });
    for (const svc of ["grafana", "prometheus", "kibana"] as const) {
      if (spec.services[svc].enabled) recs.push({ name: svc, type: "CNAME", value: "ingress" });
    }
  }
  if (spec.identity) recs.push({ name: "ipa", type: "CNAME", value: spec.identity.host });
  if (spec.database) recs.push({ name: "postgres", type: "CNAME", value: spec.database.host });
  if (spec.storage) recs.push({ name: "nfs", type: "CNAME", value: spec.storage.host });
  const taken = new Set<string>();
  return recs.filter((r) => !taken.has(r.name) && taken.add(r.name));
}

function nameServer(ctx: RenderContext): string {
  const ns = ctx.topo.withRole("identity")[0];
  return ns ? `${ctx.topo.fqdn(ns.name)}.` : `ns.${ctx.spec.domain}.`;
}

/** The serial is derived from the records, so identical specs give identical zones. */
function serial(body: string): number {
  return 1_000_000_000 + (createHash("sha256").update(body).digest().readUInt32BE(0) % 1_000_000_000);
}

function soa(ctx: RenderContext, origin: string, body: string[]): string {
  const ns = nameServer(ctx);
  return lines(
    `; ${HEADER_TEXT}`,
    `$ORIGIN ${zoneName(`${origin}.`)}`,
    "$TTL 300",
    `@ IN SOA ${zoneName(ns)} ${zoneName(`hostmaster.${ctx.spec.domain}.`)} ( ${serial(body.join("\n"))} 3600 900 604800 300 )`,
    `@ IN NS ${zoneName(ns)}`,
    ...body,
  );
}

export function forwardZone(ctx: RenderContext): string {
  const body = dnsRecords(ctx).map((r) => `${zoneName(r.name).padEnd(16)} IN ${r.type.padEnd(5)} ${zoneName(r.value)}`);
  return soa(ctx, ctx.spec.domain, body);
}

export function reverseZoneName(ctx: RenderContext): string {
  const net = cidrOf(ctx.spec.network.cidr);
  const octets = Math.floor(net.prefix / 8);
  const ip = net.network;
  const parts = [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255].slice(0, octets);
  return `${parts.reverse().join(".")}.in-addr.arpa`;
}

export function reverseZone(ctx: RenderContext): string {
  const prefix = Math.floor(cidrOf(ctx.spec.network.cidr).prefix / 8) * 8;
  const body = ctx.spec.hosts.map((h) => `${reverseLabel(ipOf(h.address), prefix).padEnd(10)} IN PTR ${zoneName(`${ctx.topo.fqdn(h.name)}.`)}`);
  return soa(ctx, reverseZoneName(ctx), body);
}

const SECRET_DIR = "/root/.fmc";

export function ipaServerInstall(ctx: RenderContext): string {
  const { spec, topo } = ctx;
  const host = topo.host(spec.identity!.host);
  const realm = spec.identity!.realm ?? spec.domain.toUpperCase();
  const records = dnsRecords(ctx).filter((r) => r.name !== host.name);
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "set -euo pipefail",
    `DM_PASSWORD=$(cat ${SECRET_DIR}/ipa-directory-manager)`,
    `ADMIN_PASSWORD=$(cat ${SECRET_DIR}/ipa-admin)`,
    "if ! ipactl status >/dev/null 2>&1; then",
    "  dnf install -y freeipa-server freeipa-server-dns",
    "  ipa-server-install --unattended \\",
    `    --realm ${sh(realm)} --domain ${sh(spec.domain)} \\`,
    `    --hostname ${sh(topo.fqdn(host.name))} --ip-address ${sh(host.address)} \\`,
    `    --setup-dns ${spec.network.upstreamDns.map((f) => `--forwarder ${sh(f)}`).join(" ")} \\`,
    `    --reverse-zone ${sh(`${reverseZoneName(ctx)}.`)} \\`,
    '    --ds-password "$DM_PASSWORD" --admin-password "$ADMIN_PASSWORD"',
    "fi",
    'echo "$ADMIN_PASSWORD" | kinit admin >/dev/null',
    "# Import the records of the rendered zone; existing ones are left as they are.",
    ...records.map((r) => {
      const flag = r.type === "A" ? `${sh(`--a-rec=${r.value}`)} --a-create-reverse` : sh(`--cname-rec=${r.value}`);
      return `ipa dnsrecord-show ${sh(spec.domain)} ${sh(r.name)} >/dev/null 2>&1 || ipa dnsrecord-add ${sh(spec.domain)} ${sh(r.name)} ${flag}`;
    }),
  );
}

export function ipaClientInstall(ctx: RenderContext, hostName: string): string {
  const { spec, topo } = ctx;
  const server = topo.host(spec.identity!.host);
  const realm = spec.identity!.realm ?? spec.domain.toUpperCase();
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "set -euo pipefail",
    "[ -f /etc/ipa/default.conf ] && exit 0  # already enrolled",
    `ADMIN_PASSWORD=$(cat ${SECRET_DIR}/ipa-admin)`,
    "dnf install -y freeipa-client",
    "ipa-client-install --unattended --mkhomedir \\",
    `  --domain ${sh(spec.domain)} --realm ${sh(realm)} \\`,
    `  --server ${sh(topo.fqdn(server.name))} --hostname ${sh(topo.fqdn(hostName))} \\`,
    '  --principal admin --password "$ADMIN_PASSWORD"',
  );
}

export function renderDns(ctx: RenderContext): Artifact[] {
  const out: Artifact[] = [
    { path: `dns/${ctx.spec.domain}.zone`, content: forwardZone(ctx) },
    { path: `dns/${reverseZoneName(ctx)}.zone`, content: reverseZone(ctx) },
  ];
  if (ctx.spec.identity) {
    out.push({ path: `identity/${ctx.spec.identity.host}-server-install.sh`, content: ipaServerInstall(ctx), executable: true });
    for (const h of ctx.spec.hosts) {
      if (h.os !== "almalinux" || h.name === ctx.spec.identity.host) continue;
      out.push({ path: `identity/${h.name}-client-install.sh`, content: ipaClientInstall(ctx, h.name), executable: true });
    }
  }
  return out;
}
