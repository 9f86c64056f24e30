// WireGuard between the public VPS (tunnel 10.17.0.1) and the LAN peer, and the VPS's
// nftables that forward public ports into the tunnel. The LAN side keeps the NAT
// mapping open with PersistentKeepalive; both sides share one MTU.
import type { Artifact, RenderContext } from "./types.js";
import { HEADER, lines } from "./types.js";
import { nftTable } from "./nft.js";
import { nftString, pathPart, wgValue } from "./quote.js";
import type { Host } from "../spec/schema.js";

export interface Tunnel {
  readonly gateway: Host;
  readonly lanPeer: Host;
}

export function tunnelOf(ctx: RenderContext): Tunnel | undefined {
  const wg = ctx.spec.wireguard;
  if (!wg) return undefined;
  const gateway = ctx.topo.withRole("gateway")[0];
  if (!gateway) return undefined;
  return { gateway, lanPeer: ctx.topo.host(wg.lanPeer) };
}

/** The LAN prefixes behind the LAN peer: every subnet except the tunnel's own. */
function lanPrefixes(ctx: RenderContext, t: Tunnel): string[] {
  const tunnel = ctx.topo.subnetOf(t.gateway.address);
  return ctx.spec.network.subnets.filter((s) => s !== tunnel).map((s) => s.cidr);
}

export function wgConfig(ctx: RenderContext, t: Tunnel, side: "gateway" | "lan"): string {
  const wg = ctx.spec.wireguard!;
  const self = side === "gateway" ? t.gateway : t.lanPeer;
  const peer = side === "gateway" ? t.lanPeer : t.gateway;
  const prefix = ctx.topo.prefixOf(self.address);
  return lines(
    HEADER("#"),
    "[Interface]",
    `Address = ${self.address}/${prefix}`,
    side === "gateway" && `ListenPort = ${wg.port}`,
    `PrivateKey = ${wgValue(ctx.secrets.get(`wireguard-${self.name}`))}`,
    `MTU = ${wg.mtu}`,
    "",
    "[Peer]",
    `# ${peer.name}`,
    `PublicKey = ${ctx.secrets.wireguardPublic(peer.name)}`,
    `PresharedKey = ${wgValue(ctx.secrets.get("wireguard-psk"))}`,
    side === "gateway"
      ? `AllowedIPs = ${[`${peer.address}/32`, ...lanPrefixes(ctx, t)].join(", ")}`
      : `AllowedIPs = ${peer.address}/32`,
    side === "lan" && `Endpoint = ${wgValue(ctx.topo.wireguardEndpoint!)}:${wg.port}`,
    side === "lan" && `PersistentKeepalive = ${wg.persistentKeepalive}`,
  );
}

/** nftables on the VPS: default-drop input, public ports DNAT'ed into the tunnel. */
export function vpsNftables(ctx: RenderContext, t: Tunnel): string {
  const wg = ctx.spec.wireguard!;
  const ports = wg.forwardPorts.join(", ");
  const pub = nftString(wg.publicInterface);
  const tun = nftString(wg.interface);
  return nftTable("fmc_gateway", {
    input: ["tcp dport 22 accept", `iifname ${pub} udp dport ${wg.port} accept`],
    forward: [`iifname ${pub} oifname ${tun} ip daddr ${t.lanPeer.address} tcp dport { ${ports} } ct status dnat accept`],
    prerouting: [`iifname ${pub} tcp dport { ${ports} } dnat ip to ${t.lanPeer.address}`],
    // replies must come back through the tunnel, so the LAN sees the VPS as the client
    postrouting: [`oifname ${tun} masquerade`],
  });
}

export function renderWireguard(ctx: RenderContext): Artifact[] {
  const t = tunnelOf(ctx);
  if (!t) return [];
  const iface = pathPart(ctx.spec.wireguard!.interface);
  return [
    { path: `wireguard/${t.gateway.name}/${iface}.conf`, content: wgConfig(ctx, t, "gateway"), secret: true },
    { path: `wireguard/${t.lanPeer.name}/${iface}.conf`, content: wgConfig(ctx, t, "lan"), secret: true },
    { path: `wireguard/${t.gateway.name}/nftables.nft`, content: vpsNftables(ctx, t) },
    {
      path: `wireguard/${t.gateway.name}/sysctl.conf`,
      content: lines(HEADER("#"), "net.ipv4.ip_forward = 1"),
    },
  ];
}
