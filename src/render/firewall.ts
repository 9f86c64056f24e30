// The LAN firewall: an nftables ruleset for a Linux gateway and the same policy as a
// pfSense fragment. The firewall has three sides: the LAN (one interface per subnet,
// topo.lanSegments), the WAN (the uplink to the internet) and the WireGuard tunnel.
// `any` in a rule or a management source means the LAN side only, never the WAN or the
// tunnel. Everything not allowed is dropped: between subnets, into the firewall itself
// (SSH only from firewall.management) and from outside; port forwards arrive through
// the tunnel and go to the edge VIP; each LAN subnet reaches what its `egress` allows on
// the internet through the WAN, masqueraded. "The internet" never includes private,
// shared or link-local addresses: the WAN side is a home LAN. Remote-admin peers
// (wireguard.adminSubnet) reach SSH on every host and the Kubernetes API VIP through
// the tunnel. Connections from the tunnel are marked so that policy routing sends their
// replies back into it (the firewall's default route is the WAN); pfSense does the same
// with reply-to, from the tunnel interface's gateway.
import type { Artifact, ClusterContext } from "./types.js";
import { lines, HEADER_TEXT } from "./types.js";
import { nftSet, nftTable } from "./nft.js";
import { nftString, xmlComment, xmlText } from "./quote.js";
import { cidrOf, contains, ipOf, isInside, overlaps } from "../model/net.js";
import type { Subnet } from "../model/schema.js";
import { adminSubnetOf, tunnelOf } from "./wireguard.js";

/** fmc's nftables table on the firewall; nothing else in the ruleset is touched. */
export const FIREWALL_TABLE = "fmc_firewall";
// Replies to connections that came through the tunnel are marked and routed back into it
// by the wireguard phase's own table (fmc_tunnel, src/render/wireguard.ts), with MSS
// clamping: one owner for the tunnel's return path.

/**
 * Destinations that are never "the internet" (RFC 1918, RFC 6598 shared, RFC 3927
 * link-local): behind a home router the WAN side is one of them.
 */
const NOT_INTERNET = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"] as const;

/** An edge subnet's default egress: NTP, package mirrors and the Traefik download (HTTP/HTTPS). */
const EDGE_EGRESS = ["udp/123", "tcp/80", "tcp/443"] as const;

/** What a subnet may open on the internet: its egress, else EDGE_EGRESS where edge hosts or an edge VIP live, else everything. */
function egressOf(ctx: ClusterContext, subnet: Subnet): readonly string[] {
  if (subnet.egress) return subnet.egress;
  const c = cidrOf(subnet.cidr);
  const edge = [...ctx.topo.withRole("edge").map((h) => h.address), ...ctx.spec.vips.filter((v) => v.role === "edge").map((v) => v.address)];
  return edge.some((a) => contains(c, ipOf(a))) ? EDGE_EGRESS : ["any"];
}

/** A subnet's egress as matches: [] for everything, else one per protocol (icmp, tcp ports, udp ports). */
function egressMatches(services: readonly string[]): Array<{ protocol: "any" | "icmp" | "tcp" | "udp"; ports: number[] }> {
  if (services.includes("any")) return [{ protocol: "any", ports: [] }];
  const ports = (p: string) => [...new Set(services.filter((s) => s.startsWith(`${p}/`)).map((s) => Number(s.slice(p.length + 1))))].sort((a, b) => a - b);
  return [
    ...(services.includes("icmp") ? [{ protocol: "icmp" as const, ports: [] }] : []),
    ...(["tcp", "udp"] as const).map((protocol) => ({ protocol, ports: ports(protocol) })).filter((m) => m.ports.length > 0),
  ];
}

/** Remote-admin peers' access through the firewall: their subnet, SSH per port to the LAN hosts, the API VIP. */
function adminAccess(ctx: ClusterContext) {
  const t = tunnelOf(ctx);
  if (!t || t.lanPeer.name !== ctx.spec.firewall!.host) return undefined;
  const lanCidrs = ctx.topo.lanSegments.map((s) => cidrOf(s.subnet.cidr));
  const onLan = (address: string) => lanCidrs.some((c) => contains(c, ipOf(address)));
  const byPort = new Map<number, string[]>();
  for (const h of ctx.spec.hosts.filter((x) => onLan(x.address))) {
    const port = h.ssh?.port ?? ctx.spec.ssh.port;
    byPort.set(port, [...(byPort.get(port) ?? []), h.address]);
  }
  const api = ctx.topo.vip(ctx.spec.k3s.apiVip);
  return {
    subnet: adminSubnetOf(ctx, t),
    ssh: [...byPort].sort(([a], [b]) => a - b).map(([port, addresses]) => ({ port, addresses })),
    api: api && onLan(api.address) ? { address: api.address, port: ctx.spec.loadBalancer.apiPort } : undefined,
  };
}

interface Rule {
  readonly description: string;
  readonly from: string;
  readonly to: string;
  readonly protocol: "tcp" | "udp" | "icmp" | "any";
  readonly ports: readonly number[];
}

/**
 * Where an endpoint is, seen from the firewall: the interfaces its traffic crosses
 * (undefined: wherever routing says, for addresses outside the private network) and
 * its address (undefined for `any`).
 */
interface Side {
  readonly ifaces?: readonly string[];
  readonly cidr?: string;
}

function resolved(ctx: ClusterContext, ref: string): string {
  const r = ctx.topo.resolveEndpoint(ref);
  if (r === undefined) throw new Error(`internal: firewall endpoint ${ref} passed validation`);
  return r;
}

/** The firewall's LAN interfaces, one per LAN subnet, in subnet order. */
function lanInterfaces(ctx: ClusterContext): string[] {
  return [...new Set(ctx.topo.lanSegments.map((s) => s.firewallInterface))];
}

function tunnelInterface(ctx: ClusterContext): string | undefined {
  return ctx.spec.wireguard ? ctx.spec.wireguard.interface : undefined;
}

/** An endpoint's side: `any` is the LAN; an address in the private network is on the interfaces of the subnets it overlaps. */
function sideOf(ctx: ClusterContext, ref: string): Side {
  const lan = lanInterfaces(ctx);
  if (ref === "any") return { ifaces: lan };
  const cidr = resolved(ctx, ref);
  const c = cidrOf(cidr);
  if (!isInside(c, cidrOf(ctx.spec.network.cidr))) return { cidr };
  const ifaces = ctx.topo.lanSegments.filter((s) => overlaps(cidrOf(s.subnet.cidr), c)).map((s) => s.firewallInterface);
  const tunnel = ctx.topo.tunnelSubnet;
  const wg = tunnelInterface(ctx);
  if (tunnel && wg && overlaps(cidrOf(tunnel.cidr), c)) ifaces.push(wg);
  return { ifaces: ifaces.length ? [...new Set(ifaces)] : lan, cidr };
}

/** The firewall's own addresses: its host address and its gateway address on every LAN subnet. */
function firewallAddresses(ctx: ClusterContext): Set<string> {
  const fw = ctx.topo.host(ctx.spec.firewall!.host);
  return new Set([fw.address, ...ctx.topo.lanSegments.map((s) => s.gateway)]);
}

/** A rule whose destination is the firewall itself (its name or one of its addresses). */
function toFirewall(ctx: ClusterContext, r: Rule): boolean {
  if (r.to === ctx.spec.firewall!.host) return true;
  const to = resolved(ctx, r.to);
  return to.endsWith("/32") && firewallAddresses(ctx).has(to.slice(0, -3));
}

function sshPort(ctx: ClusterContext): number {
  const h = ctx.topo.host(ctx.spec.firewall!.host);
  return h.ssh?.port ?? ctx.spec.ssh.port;
}

const ifMatch = (dir: "iif" | "oif", ifaces?: readonly string[]) => (ifaces ? [`${dir}name ${nftSet(ifaces.map(nftString))}`] : []);

function nftSource(s: Side): string[] {
  return [...ifMatch("iif", s.ifaces), ...(s.cidr ? [`ip saddr ${s.cidr}`] : [])];
}

function nftDestination(s: Side): string[] {
  return [...ifMatch("oif", s.ifaces), ...(s.cidr ? [`ip daddr ${s.cidr}`] : [])];
}

function nftService(r: Pick<Rule, "protocol" | "ports">): string[] {
  if (r.protocol === "icmp") return ["ip protocol icmp"];
  if (r.protocol === "any") return [];
  return [r.ports.length ? `${r.protocol} dport ${nftSet(r.ports.map(String))}` : `meta l4proto ${r.protocol}`];
}

const accept = (parts: string[], description: string) => `${parts.join(" ")} accept comment ${nftString(description)}`;

/** Port forwards with their resolved targets. */
function forwards(ctx: ClusterContext) {
  return ctx.spec.firewall!.portForwards.map((f) => ({ ...f, target: resolved(ctx, f.to).replace("/32", "") }));
}

export function firewallNftables(ctx: ClusterContext): string {
  const fw = ctx.spec.firewall!;
  const wg = tunnelInterface(ctx);
  const lan = lanInterfaces(ctx);
  const wan = nftString(fw.wanInterface);
  const lanSet = nftSet(lan.map(nftString));
  // port forwards arrive through the tunnel (from the VPS, addressed to the firewall's
  // tunnel address); without a tunnel, on the WAN
  const inbound = wg ? nftString(wg) : wan;
  const tunnelAddress = wg && ctx.spec.wireguard!.lanPeer === fw.host ? ctx.topo.host(fw.host).address : undefined;
  const toSelf = fw.rules.filter((r) => r.to === "any" || toFirewall(ctx, r));
  const between = fw.rules.filter((r) => !toFirewall(ctx, r));
  const admins = wg ? adminAccess(ctx) : undefined;
  const fromAdmins = admins ? [`iifname ${nftString(wg!)}`, `ip saddr ${admins.subnet}`] : [];
  const notInternet = `ip daddr != ${nftSet([...NOT_INTERNET])}`;
  const segment = (s: (typeof ctx.topo.lanSegments)[number]) => [`iifname ${nftString(s.firewallInterface)}`, `ip saddr ${s.subnet.cidr}`, `oifname ${wan}`, notInternet];
  const egress = ctx.topo.lanSegments.map((s) => ({ s, matches: egressMatches(egressOf(ctx, s.subnet)) }));
  return nftTable(FIREWALL_TABLE, {
    input: [
      ...fw.management.map((ref) => accept([...nftSource(sideOf(ctx, ref)), `tcp dport ${sshPort(ctx)}`], `SSH to the firewall from ${ref}`)),
      ...(admins ? [accept([...fromAdmins, `tcp dport ${sshPort(ctx)}`], "admin peers: SSH to the firewall")] : []),
      // a rule to `any` includes the firewall's own LAN side (e.g. its node_exporter)
      ...toSelf.map((r) => accept([...nftSource(sideOf(ctx, r.from)), ...nftService(r)], r.description)),
    ],
    forward: [
      ...forwards(ctx).map((f) => accept([`iifname ${inbound}`, "ct status dnat", `ip daddr ${f.target}`, `${f.protocol} dport ${f.toPort ?? f.port}`], f.description)),
      ...between.map((r) => accept([...nftSource(sideOf(ctx, r.from)), ...nftDestination(sideOf(ctx, r.to)), ...nftService(r)], r.description)),
      ...(admins
        ? [
            ...admins.ssh.map((x) => accept([...fromAdmins, `oifname ${lanSet}`, `ip daddr ${nftSet(x.addresses)}`, `tcp dport ${x.port}`], "admin peers: SSH to the hosts")),
            ...(admins.api ? [accept([...fromAdmins, ...ifMatch("oif", sideOf(ctx, `${admins.api.address}/32`).ifaces), `ip daddr ${admins.api.address}`, `tcp dport ${admins.api.port}`], "admin peers: the Kubernetes API")] : []),
          ]
        : []),
      ...egress.flatMap(({ s, matches }) => matches.map((m) => accept([...segment(s), ...nftService(m)], `${s.subnet.name} to the internet`))),
    ],
    prerouting: forwards(ctx).map((f) =>
      [`iifname ${inbound}`, ...(tunnelAddress ? [`ip daddr ${tunnelAddress}`] : []), `${f.protocol} dport ${f.port}`, `dnat ip to ${f.target}${f.toPort ? `:${f.toPort}` : ""}`, `comment ${nftString(f.description)}`].join(" "),
    ),
    postrouting: egress.filter((e) => e.matches.length > 0).map(({ s }) => `ip saddr ${s.subnet.cidr} oifname ${wan} masquerade comment ${nftString(`${s.subnet.name} to the internet`)}`),
  });
}

const esc = xmlText;
/** An interface name in an XML comment, which can't hold "--": named by its setting then. */
const commentable = (name: string) => (name.includes("--") || name.endsWith("-") ? "(see the spec's firewall interfaces)" : xmlComment(name));

/** pfSense's names for the firewall's interfaces: the first LAN subnet is lan, the tunnel opt1, the other LAN subnets opt2…. */
function pfInterfaces(ctx: ClusterContext): { byIface: Map<string, string>; lan: string[]; tunnel?: string } {
  const byIface = new Map<string, string>();
  const wg = tunnelInterface(ctx);
  if (wg) byIface.set(wg, "opt1");
  let opt = wg ? 2 : 1;
  const lan = lanInterfaces(ctx).map((ifname, i) => {
    const pf = i === 0 ? "lan" : `opt${opt++}`;
    byIface.set(ifname, pf);
    return pf;
  });
  return { byIface, lan, tunnel: wg ? "opt1" : undefined };
}

/** pfSense config.xml sections (aliases, NAT, filter rules) stating the nftables ruleset's policy. */
export function pfsenseFragment(ctx: ClusterContext): string {
  const fw = ctx.spec.firewall!;
  const pf = pfInterfaces(ctx);
  const all = [...pf.lan, ...(pf.tunnel ? [pf.tunnel] : []), "wan"];
  const alias = (ref: string) => `FMC_${ref.replace(/[^A-Za-z0-9_]/g, "_")}`;
  // fixed aliases have a prefix of their own, so no spec name can collide with them
  const LAN_NETS = "FMCNET_lan";
  const NON_PUBLIC = "FMCNET_not_internet";
  const ADMINS = "FMCNET_admins";
  const K8S_API = "FMCNET_k8s_api";
  const TUNNEL_GW = "FMC_TUNNEL";
  const admins = pf.tunnel ? adminAccess(ctx) : undefined;
  const t = tunnelOf(ctx);
  /** The gateway on the tunnel interface: pfSense adds reply-to (to it) to every pass rule there. */
  const tunnelGateway = pf.tunnel && t && t.lanPeer.name === fw.host ? t.gateway.address : undefined;
  const egress = ctx.topo.lanSegments.map((s) => ({ s, iface: pf.byIface.get(s.firewallInterface)!, matches: egressMatches(egressOf(ctx, s.subnet)) }));
  const egressAlias = (subnet: string, protocol: string) => `FMC_egress_${subnet.replace(/[^A-Za-z0-9_]/g, "_")}_${protocol}`;
  const refs = [...new Set([...fw.rules.flatMap((r) => [r.from, r.to]), ...fw.portForwards.map((f) => f.to), ...fw.management])].filter((r) => r !== "any").sort();
  /** The pfSense interfaces a source's traffic enters on. */
  const entries = (ref: string) => {
    const s = sideOf(ctx, ref);
    return s.ifaces ? s.ifaces.map((i) => pf.byIface.get(i)!) : all;
  };
  const source = (ref: string) => (ref === "any" ? "<any/>" : `<address>${alias(ref)}</address>`);
  const port = (ports: readonly number[], i: number) => (ports.length > 1 ? `<port>FMC_rule${i}_ports</port>` : ports.length ? `<port>${ports[0]}</port>` : "");
  const destination = (r: Rule, i: number) => {
    const where = r.to === "any" ? `<address>${LAN_NETS}</address>` : toFirewall(ctx, r) ? "<network>(self)</network>" : `<address>${alias(r.to)}</address>`;
    return `${where}${r.protocol === "tcp" || r.protocol === "udp" ? port(r.ports, i) : ""}`;
  };
  const alias1 = (name: string, type: "host" | "network" | "port", addresses: readonly (string | number)[], descr: string) => [
    "    <alias>",
    `      <name>${name}</name>`,
    `      <type>${type}</type>`,
    `      <address>${addresses.join(" ")}</address>`,
    `      <descr>${esc(descr)}</descr>`,
    "    </alias>",
  ];
  const rule = (o: { type: "pass" | "block"; iface: string; protocol?: string; source: string; destination: string; descr: string; family?: string }) => [
    "    <rule>",
    `      <type>${o.type}</type>`,
    `      <interface>${o.iface}</interface>`,
    `      <ipprotocol>${o.family ?? "inet"}</ipprotocol>`,
    ...(o.protocol ? [`      <protocol>${o.protocol}</protocol>`] : []),
    `      <source>${o.source}</source>`,
    `      <destination>${o.destination}</destination>`,
    `      <descr>${esc(o.descr)}</descr>`,
    "    </rule>",
  ];
  const tunnelIn = pf.tunnel ?? "wan";
  const wanName = commentable(fw.wanInterface);
  const ifaceMap = lanInterfaces(ctx).map((i) => `${pf.byIface.get(i)} = ${commentable(i)}`).join(", ");
  return lines(
    '<?xml version="1.0"?>',
    `<!-- ${HEADER_TEXT} -->`,
    `<!-- Interfaces: ${ifaceMap} (the LAN subnets, in spec order), wan = ${wanName}${pf.tunnel ? ", opt1 = the WireGuard tunnel" : ""}. -->`,
    "<!-- The same policy as firewall/nftables.nft: everything not passed below is blocked (explicit block",
    "     rules close each interface); any means the LAN side; SSH to the firewall only from the management",
    "     sources; port forwards from the tunnel to the edge VIP; each LAN subnet reaches what its egress",
    "     allows on the internet (never a private, shared or link-local address: the WAN side is a home LAN)",
    "     through the WAN with outbound NAT (hybrid mode).",
    ...(tunnelGateway
      ? [
          `     Replies to what arrives through the tunnel (port forwards, admin peers) must go back into it, not`,
          `     out of the WAN: pf does that with reply-to, which pfSense adds to every pass rule on an interface`,
          `     that has a gateway. So the tunnel (opt1) gets the gateway ${TUNNEL_GW} (${tunnelGateway}, the VPS's tunnel`,
          `     address), and the port forwards pass by filter rules on opt1, not by rdr pass, which skips them.`,
        ]
      : []),
    "     Import (pfSense 2.7, render only: fmc does not configure pfSense):",
    "     1. Interfaces > Assignments: assign the interfaces as listed above, with each LAN subnet's gateway",
    "        address (the .1 the hosts' network units point at); the tunnel needs the WireGuard package.",
    "     2. Diagnostics > Backup & Restore: download a full backup first.",
    ...(tunnelGateway
      ? [
          `     3. System > Routing > Gateways: add ${TUNNEL_GW} on opt1, address ${tunnelGateway} (as the <gateways> section`,
          "        below), and keep the WAN's gateway the default. Interfaces > OPT1: IPv4 Upstream gateway FMC_TUNNEL.",
          "        Leave System > Advanced > Firewall & NAT > Disable reply-to unticked.",
        ]
      : []),
    `     ${tunnelGateway ? 4 : 3}. Restore the areas Aliases, NAT and Firewall Rules, in that order, each from a file holding only`,
    "        that section of this fragment (its top element <aliases>, <nat> or <filter>, as an area backup).",
    `     ${tunnelGateway ? 5 : 4}. Firewall > NAT > Outbound: check the mode is Hybrid; then Status > Filter Reload.`,
    `     ${tunnelGateway ? 6 : 5}. Before closing your session, open a new one from a management source: pfSense has no timed`,
    "        revert. -->",
    "<pfsense>",
    "  <aliases>",
    ...refs.flatMap((ref) => [
      "    <alias>",
      `      <name>${alias(ref)}</name>`,
      `      <type>${resolved(ctx, ref).endsWith("/32") ? "host" : "network"}</type>`,
      `      <address>${resolved(ctx, ref).replace(/\/32$/, "")}</address>`,
      `      <descr>${esc(ref)}</descr>`,
      "    </alias>",
    ]),
    "    <alias>",
    `      <name>${LAN_NETS}</name>`,
    "      <type>network</type>",
    `      <address>${ctx.topo.lanSegments.map((s) => s.subnet.cidr).join(" ")}</address>`,
    "      <descr>the LAN side: every LAN subnet (what any means)</descr>",
    "    </alias>",
    ...alias1(NON_PUBLIC, "network", [ctx.spec.network.cidr, ...NOT_INTERNET], "the private network and every private, shared and link-local range: everything else is the internet"),
    ...(admins
      ? [
          ...alias1(ADMINS, "network", [admins.subnet], "remote-admin peers (fmc wireguard add-peer)"),
          ...admins.ssh.flatMap((x) => alias1(`FMCNET_ssh${x.port}`, "host", x.addresses, `the hosts with SSH on port ${x.port}`)),
          ...(admins.api ? alias1(K8S_API, "host", [admins.api.address], "the Kubernetes API VIP") : []),
        ]
      : []),
    ...egress.flatMap(({ s, matches }) =>
      matches.filter((m) => m.ports.length > 1).flatMap((m) => alias1(egressAlias(s.subnet.name, m.protocol), "port", m.ports, `${s.subnet.name} to the internet: ${m.protocol}`)),
    ),
    ...fw.rules.flatMap((r, i) =>
      r.ports.length > 1
        ? ["    <alias>", `      <name>FMC_rule${i}_ports</name>`, "      <type>port</type>", `      <address>${r.ports.join(" ")}</address>`, `      <descr>${esc(r.description)}</descr>`, "    </alias>"]
        : [],
    ),
    "  </aliases>",
    "  <nat>",
    ...forwards(ctx).flatMap((f) => [
      "    <rule>",
      `      <interface>${tunnelIn}</interface>`,
      "      <ipprotocol>inet</ipprotocol>",
      `      <protocol>${f.protocol}</protocol>`,
      "      <source><any/></source>",
      `      <destination><network>${tunnelIn}ip</network><port>${f.port}</port></destination>`,
      `      <target>${alias(f.to)}</target>`,
      `      <local-port>${f.toPort ?? f.port}</local-port>`,
      `      <descr>${esc(f.description)}</descr>`,
      "    </rule>",
    ]),
    "    <outbound>",
    "      <mode>hybrid</mode>",
    ...egress.filter((e) => e.matches.length > 0).flatMap(({ s }) => [
      "      <rule>",
      "        <interface>wan</interface>",
      "        <ipprotocol>inet</ipprotocol>",
      `        <source><network>${s.subnet.cidr}</network></source>`,
      "        <destination><any/></destination>",
      "        <target/>",
      `        <descr>${esc(`${s.subnet.name} to the internet`)}</descr>`,
      "      </rule>",
    ]),
    "    </outbound>",
    "  </nat>",
    ...(tunnelGateway
      ? [
          "  <gateways>",
          "    <gateway_item>",
          "      <interface>opt1</interface>",
          `      <gateway>${tunnelGateway}</gateway>`,
          `      <name>${TUNNEL_GW}</name>`,
          "      <weight>1</weight>",
          "      <ipprotocol>inet</ipprotocol>",
          "      <descr>the VPS's tunnel address: reply-to for what arrives through the tunnel</descr>",
          "    </gateway_item>",
          "  </gateways>",
        ]
      : []),
    "  <filter>",
    ...fw.management.flatMap((ref) =>
      entries(ref).flatMap((iface) => rule({ type: "pass", iface, protocol: "tcp", source: source(ref), destination: `<network>(self)</network><port>${sshPort(ctx)}</port>`, descr: `SSH to the firewall from ${ref}` })),
    ),
    ...forwards(ctx).flatMap((f) =>
      rule({ type: "pass", iface: tunnelIn, protocol: f.protocol, source: "<any/>", destination: `<address>${alias(f.to)}</address><port>${f.toPort ?? f.port}</port>`, descr: f.description }),
    ),
    ...(admins
      ? [
          ...rule({ type: "pass", iface: tunnelIn, protocol: "tcp", source: `<address>${ADMINS}</address>`, destination: `<network>(self)</network><port>${sshPort(ctx)}</port>`, descr: "admin peers: SSH to the firewall" }),
          ...admins.ssh.flatMap((x) => rule({ type: "pass", iface: tunnelIn, protocol: "tcp", source: `<address>${ADMINS}</address>`, destination: `<address>FMCNET_ssh${x.port}</address><port>${x.port}</port>`, descr: "admin peers: SSH to the hosts" })),
          ...(admins.api ? rule({ type: "pass", iface: tunnelIn, protocol: "tcp", source: `<address>${ADMINS}</address>`, destination: `<address>${K8S_API}</address><port>${admins.api.port}</port>`, descr: "admin peers: the Kubernetes API" }) : []),
        ]
      : []),
    ...fw.rules.flatMap((r, i) =>
      entries(r.from).flatMap((iface) => rule({ type: "pass", iface, protocol: r.protocol === "any" ? undefined : r.protocol, source: source(r.from), destination: destination(r, i), descr: r.description })),
    ),
    ...egress.flatMap(({ s, iface, matches }) =>
      matches.flatMap((m) => {
        const port = m.ports.length > 1 ? `<port>${egressAlias(s.subnet.name, m.protocol)}</port>` : m.ports.length ? `<port>${m.ports[0]}</port>` : "";
        return rule({ type: "pass", iface, protocol: m.protocol === "any" ? undefined : m.protocol, source: `<network>${iface}</network>`, destination: `<address>${NON_PUBLIC}</address><not/>${port}`, descr: `${s.subnet.name} to the internet` });
      }),
    ),
    ...all.flatMap((iface) => rule({ type: "block", iface, family: "inet46", source: "<any/>", destination: "<any/>", descr: "default drop: everything not passed above" })),
    "  </filter>",
    "</pfsense>",
  );
}

export function renderFirewall(ctx: ClusterContext): Artifact[] {
  if (!ctx.spec.firewall) return [];
  return [
    { path: "firewall/nftables.nft", content: firewallNftables(ctx) },
    { path: "firewall/pfsense.xml", content: pfsenseFragment(ctx) },
  ];
}
