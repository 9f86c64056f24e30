// WireGuard between the public VPS (the gateway, tunnel 10.17.0.1, listening) and the
// LAN peer (the firewall behind NAT: it dials, keeps the mapping open with
// PersistentKeepalive), plus the remote-admin peers of `fmc wireguard add-peer`.
// The VPS DNATs the public ports, from the spec's forwardFrom sources only, to the LAN
// peer's tunnel address without masquerade, so client addresses survive end to end.
// The LAN peer's default route stays its WAN: it marks connections that arrive on the
// tunnel (ct mark) and routes their replies back into it by policy (fwmark rule, own
// routing table), with wg-quick's own routing off.
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER, lines } from "./types.js";
import { nftTable } from "./nft.js";
import { configWord, nftString, pathPart, systemdPath, systemdValue, wgValue } from "./quote.js";
import type { Host } from "../model/schema.js";
import { cidrOf, formatIp, ipOf, isInside } from "../model/net.js";
import type { WireguardPeer } from "../state/secrets.js";
import { peerKeyName, peerPskName, wireguardKeyName } from "../state/secrets.js";
import { FmcError } from "../errors.js";

export interface Tunnel {
  readonly gateway: Host;
  readonly lanPeer: Host;
}

/** The connection mark of flows that arrived through the tunnel on the LAN peer. */
const TUNNEL_MARK = "0xca6c";
/** The LAN peer's routing table for them: default dev wg0. */
const TUNNEL_TABLE = 51820;
/** The priority of the fwmark rule: before the main table (32766). */
const TUNNEL_RULE_PRIORITY = 20000;
/** The LAN peer's own nftables table (marks, MSS clamp), loaded by wg-quick's PostUp. */
const TUNNEL_NFT_TABLE = "fmc_tunnel";
export const TUNNEL_NFT = "/etc/wireguard/fmc_tunnel.nft";
/** The gateway's nftables table, loaded by its own unit before the tunnel comes up. */
const GATEWAY_NFT_TABLE = "fmc_gateway";
export const GATEWAY_NFT = "/etc/fmc/fmc_gateway.nft";
export const GATEWAY_NFT_UNIT = "fmc-gateway-nftables.service";

export const wgConfPath = (iface: string) => `/etc/wireguard/${pathPart(iface)}.conf`;
export const wgUnit = (iface: string) => `wg-quick@${iface}.service`;

export function tunnelOf(ctx: ClusterContext): Tunnel | undefined {
  const wg = ctx.spec.wireguard;
  if (!wg) return undefined;
  const gateway = ctx.topo.withRole("gateway")[0];
  if (!gateway) return undefined;
  return { gateway, lanPeer: ctx.topo.host(wg.lanPeer) };
}

/** The LAN prefixes behind the LAN peer: every subnet except the tunnel's own. */
function lanPrefixes(ctx: ClusterContext): string[] {
  return ctx.topo.lanSegments.map((l) => l.subnet.cidr);
}

/** The tunnel's subnet (the one holding the gateway's tunnel address). */
function tunnelCidr(ctx: ClusterContext, t: Tunnel): string {
  return ctx.topo.subnetOf(t.gateway.address)?.cidr ?? `${t.gateway.address}/32`;
}

/** The remote-admin peers' addresses: the spec's adminSubnet, else the upper half of the tunnel subnet. */
export function adminSubnetOf(ctx: ClusterContext, t: Tunnel): string {
  const explicit = ctx.spec.wireguard?.adminSubnet;
  if (explicit) return explicit;
  const c = cidrOf(tunnelCidr(ctx, t));
  if (c.prefix >= 31) return c.text;
  const half = c.prefix + 1;
  return `${formatIp((c.network + 2 ** (32 - half)) >>> 0)}/${half}`;
}

/** Whether the admin subnet needs a route of its own (it lies outside the tunnel subnet). */
function adminOutsideTunnel(ctx: ClusterContext, t: Tunnel): boolean {
  return !isInside(cidrOf(adminSubnetOf(ctx, t)), cidrOf(tunnelCidr(ctx, t)));
}

/**
 * The next free address for a remote-admin peer: the lowest host address of the admin
 * subnet (not its network or broadcast address) that no spec host and no peer uses.
 */
export function nextPeerAddress(ctx: ClusterContext, peers: readonly Pick<WireguardPeer, "address">[]): string {
  const t = tunnelOf(ctx);
  if (!t) throw new FmcError("NO_WIREGUARD", "this spec has no WireGuard tunnel (a wireguard section and a host with role gateway)", "add one: fmc docs shows the wireguard section");
  const admin = cidrOf(adminSubnetOf(ctx, t));
  const size = 2 ** (32 - admin.prefix);
  const taken = new Set([...ctx.spec.hosts.map((h) => h.address), ...peers.map((p) => p.address)].map(ipOf));
  const first = size > 2 ? 1 : 0;
  const last = size > 2 ? size - 2 : size - 1;
  for (let i = first; i <= last; i++) {
    const ip = (admin.network + i) >>> 0;
    if (!taken.has(ip)) return formatIp(ip);
  }
  throw new FmcError("PEER_SUBNET_FULL", `the admin subnet ${admin.text} has no free address left (${peers.length} peers)`, "set a larger wireguard.adminSubnet in the spec");
}

/** wg-quick hooks run by bash with `set -e`: each one a plain command line, no "#". */
function hook(line: string): string {
  if (line.includes("#")) throw new Error(`internal: a wg-quick hook cannot hold #: ${line}`);
  return line;
}

function peerBlock(comment: string, publicKey: string, psk: string, allowed: readonly string[], extra: Array<string | false> = []): string[] {
  return ["", "[Peer]", `# ${comment}`, `PublicKey = ${wgValue(publicKey)}`, `PresharedKey = ${wgValue(psk)}`, `AllowedIPs = ${allowed.join(", ")}`, ...extra.filter((x): x is string => !!x)];
}

export function wgConfig(ctx: ClusterContext, t: Tunnel, side: "gateway" | "lan"): string {
  const wg = ctx.spec.wireguard!;
  const self = side === "gateway" ? t.gateway : t.lanPeer;
  const peer = side === "gateway" ? t.lanPeer : t.gateway;
  const prefix = ctx.topo.prefixOf(self.address);
  const admin = adminSubnetOf(ctx, t);
  const routeAdmin = adminOutsideTunnel(ctx, t);
  const mark = TUNNEL_MARK;
  const rule = `fwmark ${mark} lookup ${TUNNEL_TABLE} priority ${TUNNEL_RULE_PRIORITY}`;
  const iface = configWord("a WireGuard config", wg.interface);
  const psk = ctx.secrets.get("wireguard-psk");
  const header = [
    HEADER("#"),
    side === "gateway"
      ? `# ${self.name}: the tunnel's server; ${peer.name} dials it from behind NAT. Admin peers: fmc wireguard add-peer.`
      : `# ${self.name}: dials ${peer.name}; replies to flows that came in on ${iface} go back through it (fwmark ${mark}, table ${TUNNEL_TABLE}).`,
  ];
  if (side === "gateway") {
    return lines(
      header,
      "[Interface]",
      `Address = ${self.address}/${prefix}`,
      `ListenPort = ${wg.port}`,
      `PrivateKey = ${wgValue(ctx.secrets.get(wireguardKeyName(self.name)))}`,
      `MTU = ${wg.mtu}`,
      routeAdmin && `PostUp = ${hook(`ip -4 route replace ${admin} dev %i`)}`,
      peerBlock(peer.name, ctx.secrets.wireguardPublic(peer.name), psk, [`${peer.address}/32`, ...lanPrefixes(ctx)]),
      ...ctx.secrets.wireguardPeers().map((p) =>
        peerBlock(`admin peer ${p.name} (fmc wireguard add-peer)`, p.publicKey, ctx.secrets.get(peerPskName(p.name)), [`${p.address}/32`]),
      ),
    );
  }
  return lines(
    header,
    "[Interface]",
    `Address = ${self.address}/${prefix}`,
    `PrivateKey = ${wgValue(ctx.secrets.get(wireguardKeyName(self.name)))}`,
    `MTU = ${wg.mtu}`,
    // AllowedIPs 0.0.0.0/0 must not become this host's default route: the routes are ours
    "Table = off",
    routeAdmin && `PostUp = ${hook(`ip -4 route replace ${admin} dev %i`)}`,
    `PostUp = ${hook(`ip -4 route replace default dev %i table ${TUNNEL_TABLE}`)}`,
    `PostUp = ${hook(`while ip -4 rule del ${rule} 2>/dev/null; do :; done`)}`,
    `PostUp = ${hook(`ip -4 rule add ${rule}`)}`,
    `PostUp = ${hook(`sysctl -q -w net.ipv4.conf.%i.rp_filter=2`)}`,
    `PostUp = ${hook(`nft -f ${TUNNEL_NFT}`)}`,
    `PreDown = ${hook(`nft delete table inet ${TUNNEL_NFT_TABLE} || true`)}`,
    `PreDown = ${hook(`ip -4 rule del ${rule} || true`)}`,
    `PreDown = ${hook(`ip -4 route flush table ${TUNNEL_TABLE} || true`)}`,
    peerBlock(peer.name, ctx.secrets.wireguardPublic(peer.name), psk, ["0.0.0.0/0"], [
      `Endpoint = ${wgValue(ctx.topo.wireguardEndpoint!)}:${wg.port}`,
      `PersistentKeepalive = ${wg.persistentKeepalive}`,
    ]),
  );
}

/**
 * A remote-admin peer's own config, printed once by add-peer: the LAN and the tunnel
 * through the gateway, the internal DNS when the spec has one.
 */
export function peerClientConfig(ctx: ClusterContext, t: Tunnel, peer: WireguardPeer, privateKey = ctx.secrets.get(peerKeyName(peer.name)), presharedKey = ctx.secrets.get(peerPskName(peer.name))): string {
  const wg = ctx.spec.wireguard!;
  const dns = ctx.topo.dnsHost;
  return lines(
    `# fmc WireGuard peer ${peer.name} of ${ctx.spec.name}: reaches the LAN through ${t.gateway.name}.`,
    `# Keep this file private: it holds the peer's private key.`,
    "[Interface]",
    `Address = ${peer.address}/32`,
    `PrivateKey = ${wgValue(privateKey)}`,
    `MTU = ${wg.mtu}`,
    dns && `DNS = ${dns.address}, ${wgValue(ctx.spec.domain)}`,
    "",
    "[Peer]",
    `# ${t.gateway.name}`,
    `PublicKey = ${ctx.secrets.wireguardPublic(t.gateway.name)}`,
    `PresharedKey = ${wgValue(presharedKey)}`,
    `AllowedIPs = ${[tunnelCidr(ctx, t), ...(adminOutsideTunnel(ctx, t) ? [adminSubnetOf(ctx, t)] : []), ...lanPrefixes(ctx)].join(", ")}`,
    `Endpoint = ${wgValue(ctx.topo.wireguardEndpoint!)}:${wg.port}`,
    `PersistentKeepalive = ${wg.persistentKeepalive}`,
  );
}

/**
 * The LAN peer's table: connections that arrive on the tunnel get ct mark TUNNEL_MARK;
 * their packets from elsewhere (the replies) carry it as meta mark before routing, so
 * the fwmark rule sends them back into the tunnel. TCP MSS follows the tunnel's MTU.
 */
export function tunnelNftables(ctx: ClusterContext): string {
  const tun = nftString(ctx.spec.wireguard!.interface);
  return lines(
    "#!/usr/sbin/nft -f",
    HEADER("#"),
    `table inet ${TUNNEL_NFT_TABLE}`,
    `delete table inet ${TUNNEL_NFT_TABLE}`,
    `table inet ${TUNNEL_NFT_TABLE} {`,
    "    chain prerouting {",
    "        type filter hook prerouting priority mangle; policy accept;",
    `        iifname ${tun} ct state new ct mark set ${TUNNEL_MARK}`,
    `        iifname != ${tun} ct mark ${TUNNEL_MARK} meta mark set ct mark`,
    "    }",
    "    chain output {",
    "        type route hook output priority mangle; policy accept;",
    `        ct mark ${TUNNEL_MARK} meta mark set ct mark`,
    "    }",
    "    chain forward {",
    "        type filter hook forward priority mangle; policy accept;",
    `        oifname ${tun} tcp flags syn tcp option maxseg size set rt mtu`,
    "    }",
    "}",
  );
}

/**
 * nftables on the VPS: default-drop input (SSH, WireGuard), the public ports DNAT'ed to
 * the LAN peer from the forwardFrom sources only, admin peers forwarded between tunnel
 * peers. Nothing is masqueraded: the LAN sees the real client addresses. SSH: from
 * anywhere while wireguard.sshFrom is unset (a new VPS is first reached at its public
 * address); once set, through the tunnel and from those sources on the public side.
 */
export function vpsNftables(ctx: ClusterContext, t: Tunnel): string {
  const wg = ctx.spec.wireguard!;
  const ports = wg.forwardPorts.join(", ");
  const pub = nftString(wg.publicInterface);
  const tun = nftString(wg.interface);
  const sshPort = t.gateway.ssh?.port ?? ctx.spec.ssh.port;
  const from = wg.forwardFrom.map((c) => cidrOf(c).text).join(", ");
  const lan = t.lanPeer.address;
  const sshFrom = wg.sshFrom?.map((c) => cidrOf(c).text);
  const ssh =
    sshFrom === undefined
      ? [`tcp dport ${sshPort} accept`]
      : [`iifname ${tun} tcp dport ${sshPort} accept`, ...(sshFrom.length ? [`iifname ${pub} ip saddr { ${sshFrom.join(", ")} } tcp dport ${sshPort} accept`] : [])];
  return nftTable(GATEWAY_NFT_TABLE, {
    input: [...ssh, `iifname ${pub} udp dport ${wg.port} accept`],
    forward: [
      `iifname ${pub} oifname ${tun} tcp flags syn tcp option maxseg size set rt mtu`,
      `iifname ${pub} oifname ${tun} ip daddr ${lan} tcp dport { ${ports} } ct status dnat accept`,
      `iifname ${tun} oifname ${tun} ip saddr ${adminSubnetOf(ctx, t)} accept`,
    ],
    prerouting: [`iifname ${pub} ip saddr { ${from} } tcp dport { ${ports} } dnat ip to ${lan}`],
    postrouting: [],
  });
}

/** The unit that loads the VPS's table at boot, before the tunnel. */
export function gatewayNftUnit(ctx: ClusterContext): string {
  const iface = ctx.spec.wireguard!.interface;
  return lines(
    HEADER("#"),
    "[Unit]",
    `Description=fmc: the gateway's nftables (table inet ${GATEWAY_NFT_TABLE})`,
    "DefaultDependencies=no",
    "Wants=network-pre.target",
    `Before=network-pre.target ${systemdValue(wgUnit(iface))}`,
    // Debian's nftables.service flushes the whole ruleset: load after it, never before
    "After=local-fs.target nftables.service",
    "PartOf=nftables.service",
    "ReloadPropagatedFrom=nftables.service",
    "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    `ExecStart=/usr/sbin/nft -f ${systemdPath(GATEWAY_NFT)}`,
    `ExecReload=/usr/sbin/nft -f ${systemdPath(GATEWAY_NFT)}`,
    `ExecStop=/usr/sbin/nft delete table inet ${GATEWAY_NFT_TABLE}`,
    "",
    "[Install]",
    "WantedBy=multi-user.target",
  );
}

export function renderWireguard(ctx: ClusterContext): Artifact[] {
  const t = tunnelOf(ctx);
  if (!t) return [];
  const iface = pathPart(ctx.spec.wireguard!.interface);
  return [
    { path: `wireguard/${t.gateway.name}/${iface}.conf`, content: wgConfig(ctx, t, "gateway"), secret: true },
    { path: `wireguard/${t.lanPeer.name}/${iface}.conf`, content: wgConfig(ctx, t, "lan"), secret: true },
    { path: `wireguard/${t.lanPeer.name}/fmc_tunnel.nft`, content: tunnelNftables(ctx) },
    { path: `wireguard/${t.gateway.name}/nftables.nft`, content: vpsNftables(ctx, t) },
    { path: `wireguard/${t.gateway.name}/${GATEWAY_NFT_UNIT}`, content: gatewayNftUnit(ctx) },
    {
      path: `wireguard/${t.gateway.name}/sysctl.conf`,
      content: lines(HEADER("#"), "net.ipv4.ip_forward = 1"),
    },
  ];
}
