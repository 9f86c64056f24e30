// The firewall: rules and management sources name a subnet, host, VIP, CIDR or any; its
// interfaces and port forwards are unique; rules between subnets hold only where one
// host routes and filters between them (checkRoutedLayout); each LAN subnet's egress is
// a list without repeats, `any` alone (checkEgress).
import { contains, isInside, parseCidr, parseIp } from "../net.js";
import { didYouMean } from "../../errors.js";
import { needHost, type Checker, type Layout, type Names } from "./context.js";

export function checkFirewall(c: Checker, layout: Layout, names: Names): void {
  const { spec, err } = c;
  checkEgress(c, layout);
  const fw = spec.firewall;
  if (!fw) return;
  const { byName, vipNames } = names;
  needHost(c, names, "firewall.host", fw.host, "firewall");
  const known = [...layout.subnetNames.keys(), ...byName.keys(), ...vipNames.keys(), "any"];
  const checkRef = (path: string, ref: string) => {
    if (known.includes(ref)) return;
    if (/^\d/.test(ref)) {
      const cidr = ref.includes("/") ? parseCidr(ref) : parseIp(ref);
      if (cidr === undefined) err(path, `"${ref}" is not an IPv4 address or CIDR`);
      else if (typeof cidr === "string") err(path, `${ref}: ${cidr}`);
      return;
    }
    err(path, `"${ref}" is not a subnet, host, VIP, CIDR or any`, didYouMean(ref, known));
  };
  fw.rules.forEach((r, i) => {
    for (const side of ["from", "to"] as const) checkRef(`firewall.rules[${i}].${side}`, r[side]);
    if ((r.protocol === "icmp" || r.protocol === "any") && r.ports.length) err(`firewall.rules[${i}].ports`, `ports make no sense for protocol ${r.protocol}`);
  });
  fw.management.forEach((ref, i) => checkRef(`firewall.management[${i}]`, ref));
  const ifaces = new Map<string, number>();
  spec.network.subnets.forEach((s, i) => {
    if (!s.firewallInterface) return;
    if (s.firewallInterface === fw.wanInterface) err(`network.subnets[${i}].firewallInterface`, `${s.firewallInterface} is the firewall's WAN interface`);
    if (ifaces.has(s.firewallInterface)) err(`network.subnets[${i}].firewallInterface`, `${s.firewallInterface} is already the firewall's interface on ${spec.network.subnets[ifaces.get(s.firewallInterface)!]!.name}`);
    ifaces.set(s.firewallInterface, i);
  });
  const fwdPorts = new Set<string>();
  fw.portForwards.forEach((f, i) => {
    if (!byName.has(f.to) && !vipNames.has(f.to)) err(`firewall.portForwards[${i}].to`, `"${f.to}" is not a host or VIP`, didYouMean(f.to, [...byName.keys(), ...vipNames.keys()]));
    const key = `${f.port}/${f.protocol}`;
    if (fwdPorts.has(key)) err(`firewall.portForwards[${i}].port`, `${key} is forwarded twice`);
    fwdPorts.add(key);
  });
  checkRoutedLayout(c, layout, names);
}

/** A subnet's egress: LAN subnets only, each service once, `any` only alone; without a firewall nothing enforces it. */
function checkEgress(c: Checker, layout: Layout): void {
  c.spec.network.subnets.forEach((s, i) => {
    if (s.egress === undefined) return;
    const path = `network.subnets[${i}].egress`;
    if (!layout.isLan(i)) return c.err(path, `"${s.name}" is the WireGuard tunnel's subnet: its traffic never leaves through the firewall's WAN`, "remove egress here; the LAN subnets have their own");
    if (!c.spec.firewall) c.warn(path, "there is no firewall section: nothing enforces egress", "add a firewall section, or remove egress");
    const seen = new Set<string>();
    s.egress.forEach((e, j) => {
      if (e === "any" && s.egress!.length > 1) c.err(`${path}[${j}]`, "any already opens everything: write any alone, or list the services", `egress: [any] or egress: [${s.egress!.filter((x) => x !== "any").join(", ")}]`);
      else if (seen.has(e)) c.err(`${path}[${j}]`, `${e} is listed twice`);
      seen.add(e);
    });
  });
}

/**
 * Cross-subnet rules hold only where one host routes and filters between the subnets:
 * every LAN subnet's gateway must be the firewall's interface on it, reached on a bridge.
 */
function checkRoutedLayout(c: Checker, layout: Layout, names: Names): void {
  const { spec, err, warn } = c;
  const fw = spec.firewall!;
  const { subnets, fwHost, isLan, kvmHostIp } = layout;
  const { byAddress } = names;
  if (!fwHost) {
    const cross = fw.rules.map((r, i) => ({ r, i })).filter(({ r }) => crossesSubnets(c, layout, names, r.from, r.to));
    if (cross.length) {
      const { r, i } = cross[0]!;
      c.errOf("hosts")("firewall.rules", `${cross.length === 1 ? "a rule crosses" : `${cross.length} rules cross`} subnets (firewall.rules[${i}]: ${r.from} to ${r.to}) but no host has role firewall to route between them and enforce it`, `give ${fw.host} role firewall, or remove the rules between subnets`);
    }
    return;
  }
  const fi = spec.hosts.indexOf(fwHost);
  spec.network.subnets.forEach((s, i) => {
    const path = `network.subnets[${i}]`;
    if (s.libvirt === "nat") {
      err(`${path}.libvirt`, `a libvirt nat network makes the KVM host the gateway of "${s.name}" (and it rejects inbound traffic), so ${fwHost.name} could not enforce the rules between subnets`, `use libvirt: bridge: fmc renders an isolated network whose gateway is ${fwHost.name}'s interface`);
    }
    const sub = subnets.find((x) => x.index === i);
    if (!sub || !isLan(i)) return;
    if (s.libvirt !== "none" && sub.cidr.prefix > 29) err(`${path}.cidr`, `${s.cidr} is too small for a libvirt network (at least a /29): it needs ${fwHost.name}'s gateway, the KVM host's last address and the hosts`);
    const g = s.gateway === undefined ? undefined : parseIp(s.gateway);
    if (g === undefined || !contains(sub.cidr, g)) return;
    const owner = byAddress.get(g);
    if (owner !== undefined && owner !== fwHost.name) {
      err(`${path}.gateway`, `${s.gateway} is the address of ${owner.startsWith("VIP ") ? owner : `host ${owner}`}, but the gateway of "${s.name}" is ${fwHost.name}'s interface there`, `leave gateway out (${fwHost.name} takes the first address) or pick an address nothing else uses`);
    } else if (g === kvmHostIp(sub)) {
      err(`${path}.gateway`, `${s.gateway} is the last usable address of "${s.name}", which the KVM host holds`, "leave gateway out or pick another address");
    }
  });
  const lans = spec.network.subnets.map((s, i) => ({ s, i })).filter(({ i }) => isLan(i));
  if (fwHost.vm) {
    if (fwHost.os === "flatcar") err(`hosts[${fi}].os`, `the firewall VM's interfaces are configured by cloud-init, which Flatcar does not run: ${fwHost.name} would have no LAN side`, "use debian or almalinux for the firewall");
    const others = [...byAddress].filter(([, owner]) => owner !== fwHost.name).map(([ip]) => ip);
    for (const { s, i } of lans) {
      const sub = subnets.find((x) => x.index === i);
      if (s.libvirt === "none" && sub && others.some((ip) => contains(sub.cidr, ip))) warn(`network.subnets[${i}].libvirt`, `${fwHost.name} is a VM but Terraform gives it no interface on "${s.name}" (libvirt: none): nothing routes that subnet`, "set libvirt: bridge");
    }
  } else if (lans.some(({ s }) => s.libvirt !== "none") && spec.hosts.some((h) => h.vm)) {
    warn(`hosts[${fi}]`, `${fwHost.name} is not a VM: Terraform's LAN networks are isolated bridges on the KVM host (fmc1-…), which reach it only if you add its LAN ports to them`, `give ${fwHost.name} a vm section to have it created with one NIC per subnet`);
  }
}

/** Whether a rule's two ends can lie in different subnets (any, a CIDR across subnets, or two subnets). */
function crossesSubnets(c: Checker, layout: Layout, names: Names, from: string, to: string): boolean {
  const a = subnetOfRef(c, layout, names, from);
  const b = subnetOfRef(c, layout, names, to);
  return a === undefined || b === undefined || a !== b;
}

function subnetOfRef(c: Checker, layout: Layout, names: Names, ref: string): number | undefined {
  const { subnetNames, subnetOf, subnets } = layout;
  if (subnetNames.has(ref)) return subnetNames.get(ref);
  const ip = names.hostIps.get(ref) ?? (names.vipNames.has(ref) ? parseIp(c.spec.vips[names.vipNames.get(ref)!]!.address) : undefined);
  if (ip !== undefined) return subnetOf(ip)?.index;
  const cidr = ref === "any" ? undefined : parseCidr(ref.includes("/") ? ref : `${ref}/32`);
  return typeof cidr === "object" ? subnets.find((s) => isInside(cidr, s.cidr))?.index : undefined;
}
