// VIPs: unique names and VRRP router ids, an address nothing else holds inside the
// subnet of every host that may hold it, and a VIP for the roles that need one. Adds the
// VIPs to the names and addresses seen.
import { contains, parseIp } from "../net.js";
import { gatewayIp, type Checker, type Layout, type Names } from "./context.js";

export function checkVips(c: Checker, layout: Layout, names: Names): void {
  const { spec, err } = c;
  const { subnetOf, fwHost, isLan, kvmHostIp, explicitGateway } = layout;
  const { byName, byAddress, hostIps, vipNames } = names;
  const routerIds = new Map<number, string>();
  spec.vips.forEach((v, i) => {
    const path = `vips[${i}]`;
    if (vipNames.has(v.name)) err(`${path}.name`, `VIP name "${v.name}" is used twice`);
    vipNames.set(v.name, i);
    if (byName.has(v.name)) err(`${path}.name`, `VIP name "${v.name}" is also a hostname`);
    if (routerIds.has(v.routerId)) err(`${path}.routerId`, `virtual router id ${v.routerId} is already used by VIP "${routerIds.get(v.routerId)}"`);
    routerIds.set(v.routerId, v.name);
    const ip = parseIp(v.address);
    if (ip === undefined) return err(`${path}.address`, `"${v.address}" is not an IPv4 address`);
    const owner = byAddress.get(ip);
    if (owner !== undefined) {
      err(`${path}.address`, owner.startsWith("VIP ") ? `${v.address} is already used by ${owner}` : `${v.address} is the address of host ${owner}`, "a VIP needs an address nothing else uses");
    }
    byAddress.set(ip, `VIP ${v.name}`);
    const s = subnetOf(ip);
    if (!s) return c.errOf("network.subnets")(`${path}.address`, `${v.address} is outside every subnet`);
    if (fwHost && isLan(s.index) && !explicitGateway(s.index) && gatewayIp(spec, s.index, s.cidr) === ip) {
      err(`${path}.address`, `${v.address} is the gateway of subnet "${s.name}": ${fwHost.name}'s LAN interface holds it`, "a VIP needs an address nothing else uses");
    } else if (kvmHostIp(s) === ip) {
      err(`${path}.address`, `${v.address} is the last usable address of subnet "${s.name}": the KVM host holds it`, "a VIP needs an address nothing else uses");
    }
    const holders = spec.hosts.filter((h) => h.roles.includes(v.role));
    if (holders.length === 0) c.errOf("hosts")(`${path}.role`, `no host has role ${v.role} to hold VIP ${v.name}`);
    else if (holders.length === 1) c.warnOf("hosts")(`${path}.role`, `only ${holders[0]!.name} holds VIP ${v.name}: no failover`);
    for (const h of holders) {
      const hip = hostIps.get(h.name);
      if (hip !== undefined && !contains(s.cidr, hip)) {
        err(`${path}.address`, `${v.address} is in subnet "${s.name}" but holder ${h.name} (${h.address}) is not`, "VRRP moves a VIP only inside the holders' own subnet");
      }
    }
  });
  for (const role of ["loadbalancer", "edge"] as const) {
    if (spec.hosts.some((h) => h.roles.includes(role)) && !spec.vips.some((v) => v.role === role)) {
      c.warnOf("vips")("vips", `hosts have role ${role} but no VIP has role ${role}`);
    }
  }
}
