// network.cidr and its subnets: each parses, lies inside the network, overlaps no other
// and has its gateway inside it. Returns the layout later checks place hosts and VIPs in.
import { broadcast, contains, isInside, overlaps, parseIp, type Cidr } from "../net.js";
import { cidrAt, type Checker, type Layout, type Subnet } from "./context.js";

export function checkNetwork(c: Checker): Layout {
  const { spec, err } = c;
  const net = cidrAt(spec.network.cidr, "network.cidr", err);
  if (net && (net.prefix < 8 || net.prefix > 30)) err("network.cidr", `/${net.prefix} is not a usable private network`, "use a prefix from /8 to /30, such as 10.17.0.0/16");
  const subnets: Subnet[] = [];
  const subnetNames = new Map<string, number>();
  spec.network.subnets.forEach((s, i) => {
    const path = `network.subnets[${i}]`;
    if (subnetNames.has(s.name)) err(`${path}.name`, `subnet name "${s.name}" is used twice`);
    subnetNames.set(s.name, i);
    const cidr = cidrAt(s.cidr, `${path}.cidr`, err);
    if (!cidr) return;
    if (net && !isInside(cidr, net)) err(`${path}.cidr`, `${s.cidr} is outside network.cidr ${spec.network.cidr}`);
    for (const other of subnets) {
      if (overlaps(cidr, other.cidr)) err(`${path}.cidr`, `${s.cidr} overlaps subnet "${other.name}" (${other.cidr.text})`);
    }
    if (s.gateway !== undefined) {
      const g = parseIp(s.gateway);
      if (g === undefined) err(`${path}.gateway`, `"${s.gateway}" is not an IPv4 address`);
      else if (!contains(cidr, g)) err(`${path}.gateway`, `${s.gateway} is outside ${s.cidr}`);
    }
    subnets.push({ name: s.name, cidr, index: i });
  });
  const subnetOf = (ip: number) => subnets.find((s) => contains(s.cidr, ip));
  // With a firewall host, it routes between the subnets as every LAN subnet's gateway;
  // the WireGuard tunnel's subnet (the gateway's) is no LAN segment.
  const fwHost = spec.firewall ? spec.hosts.find((h) => h.name === spec.firewall!.host && h.roles.includes("firewall")) : undefined;
  const vpsIp = spec.wireguard ? parseIp(spec.hosts.find((h) => h.roles.includes("gateway"))?.address ?? "") : undefined;
  const tunnelIndex = vpsIp === undefined ? undefined : subnetOf(vpsIp)?.index;
  const isLan = (index: number) => index !== tunnelIndex;
  return {
    net,
    subnets,
    subnetNames,
    subnetOf,
    fwHost,
    isLan,
    kvmHostIp: (s: { index: number; cidr: Cidr }) => (fwHost && isLan(s.index) && spec.network.subnets[s.index]!.libvirt !== "none" ? broadcast(s.cidr) - 1 : undefined),
    explicitGateway: (index: number) => fwHost !== undefined && isLan(index) && spec.network.subnets[index]!.gateway !== undefined,
  };
}
