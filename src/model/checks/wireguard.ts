// The WireGuard tunnel: its LAN peer is the firewall (not the gateway), exactly one host
// is the gateway (the VPS), the LAN peer has an address to dial, the CIDRs that reach
// the VPS's nftables parse, and wireguard.sshFrom does not close the way fmc reaches the VPS.
import type { Checker, Names } from "./context.js";
import { cidrAt, needHost } from "./context.js";

export function checkWireguard(c: Checker, names: Names): void {
  const { spec, err, warn } = c;
  const wg = spec.wireguard;
  if (!wg) {
    if (spec.hosts.some((h) => h.roles.includes("gateway"))) c.errOf("hosts")("wireguard", "a host has role gateway but there is no wireguard section");
    return;
  }
  needHost(c, names, "wireguard.lanPeer", wg.lanPeer, "firewall");
  if (spec.hosts.find((h) => h.name === wg.lanPeer)?.roles.includes("gateway")) err("wireguard.lanPeer", `${wg.lanPeer} is the gateway too: the tunnel needs two ends`, "the LAN peer is the firewall inside the LAN; the gateway is the VPS");
  wg.forwardFrom.forEach((x, i) => cidrAt(x, `wireguard.forwardFrom[${i}]`, err));
  wg.sshFrom?.forEach((x, i) => cidrAt(x, `wireguard.sshFrom[${i}]`, err));
  if (wg.adminSubnet !== undefined) cidrAt(wg.adminSubnet, "wireguard.adminSubnet", err);
  const gws = spec.hosts.filter((h) => h.roles.includes("gateway"));
  if (gws.length === 1 && wg.sshFrom?.length === 0) checkSshReach(c, gws[0]!.ssh?.host ?? gws[0]!.address, gws[0]!.address);
  if (gws.length !== 1) c.errOf("hosts")("wireguard", `WireGuard needs exactly one host with role gateway (the VPS); found ${gws.length}`);
  else if (!gws[0]!.publicAddress) {
    const at = `hosts[${names.byName.get(gws[0]!.name)}].publicAddress`;
    if (wg.endpoint === undefined) err(at, "the gateway has no publicAddress and wireguard.endpoint is not set: the LAN peer has nothing to dial", "give the VPS its publicAddress");
    else warn(at, "the gateway has no publicAddress; Cloudflare records need one");
  }
}

/**
 * `sshFrom: []` leaves the gateway's SSH to the tunnel: fmc must then reach it at its
 * tunnel address (from the LAN side or an admin peer), never at a public one.
 */
function checkSshReach(c: Checker, target: string, tunnelAddress: string): void {
  if (target === tunnelAddress) return;
  c.err(
    "wireguard.sshFrom",
    `[] closes the gateway's SSH on its public side, but fmc reaches it at ${target}: the next run would be locked out (the gateway's table has no timed revert)`,
    `list the addresses you connect from, or set the gateway's ssh.host to its tunnel address ${tunnelAddress} and run fmc from an admin peer`,
  );
}
