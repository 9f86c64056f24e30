// The WireGuard tunnel: its LAN peer is the firewall (not the gateway), exactly one host
// is the gateway (the VPS), and the LAN peer has an address to dial.
import type { Checker, Names } from "./context.js";
import { needHost } from "./context.js";

export function checkWireguard(c: Checker, names: Names): void {
  const { spec, err, warn } = c;
  const wg = spec.wireguard;
  if (!wg) {
    if (spec.hosts.some((h) => h.roles.includes("gateway"))) c.errOf("hosts")("wireguard", "a host has role gateway but there is no wireguard section");
    return;
  }
  needHost(c, names, "wireguard.lanPeer", wg.lanPeer, "firewall");
  if (spec.hosts.find((h) => h.name === wg.lanPeer)?.roles.includes("gateway")) err("wireguard.lanPeer", `${wg.lanPeer} is the gateway too: the tunnel needs two ends`, "the LAN peer is the firewall inside the LAN; the gateway is the VPS");
  const gws = spec.hosts.filter((h) => h.roles.includes("gateway"));
  if (gws.length !== 1) c.errOf("hosts")("wireguard", `WireGuard needs exactly one host with role gateway (the VPS); found ${gws.length}`);
  else if (!gws[0]!.publicAddress) {
    const at = `hosts[${names.byName.get(gws[0]!.name)}].publicAddress`;
    if (wg.endpoint === undefined) err(at, "the gateway has no publicAddress and wireguard.endpoint is not set: the LAN peer has nothing to dial", "give the VPS its publicAddress");
    else warn(at, "the gateway has no publicAddress; Cloudflare records need one");
  }
}
