// Each host: a unique name and address inside a subnet (not its network, broadcast or
// gateway address, nor the KVM host's), a VM only where libvirt provides the subnet, data
// disks with unique names, and no two listeners on one port. Returns the names and
// addresses seen, for the checks that refer to hosts.
import { broadcast, parseIp } from "../net.js";
import { gatewayIp, type Checker, type Layout, type Names } from "./context.js";
import { checkPorts } from "./ports.js";

export function checkHosts(c: Checker, layout: Layout): Names {
  const { spec, err, warn } = c;
  const { subnets, subnetOf, fwHost, isLan, kvmHostIp, explicitGateway } = layout;
  const byName = new Map<string, number>();
  const byAddress = new Map<number, string>();
  const hostIps = new Map<string, number>();
  spec.hosts.forEach((h, i) => {
    const path = `hosts[${i}]`;
    if (byName.has(h.name)) err(`${path}.name`, `hostname "${h.name}" is already used by hosts[${byName.get(h.name)}]`);
    else byName.set(h.name, i);
    const dupRoles = h.roles.filter((r, j) => h.roles.indexOf(r) !== j);
    if (dupRoles.length) warn(`${path}.roles`, `role "${dupRoles[0]}" is listed twice`);
    const ip = parseIp(h.address);
    if (ip === undefined) {
      err(`${path}.address`, `"${h.address}" is not an IPv4 address`);
    } else {
      hostIps.set(h.name, ip);
      const owner = byAddress.get(ip);
      if (owner !== undefined) err(`${path}.address`, `${h.address} is already used by ${owner}`);
      else byAddress.set(ip, h.name);
      const s = subnetOf(ip);
      if (!s) {
        c.errOf("network.subnets")(`${path}.address`, `${h.address} is outside every subnet`, `add a subnet to network.subnets or move ${h.name} into one of: ${subnets.map((x) => `${x.name} ${x.cidr.text}`).join(", ")}`);
      } else if (ip === s.cidr.network || ip === broadcast(s.cidr)) {
        err(`${path}.address`, `${h.address} is the network or broadcast address of subnet "${s.name}"`);
      } else if (!h.roles.includes("firewall") && !(h.roles.includes("gateway") && (!fwHost || !isLan(s.index))) && gatewayIp(spec, s.index, s.cidr) === ip) {
        // an explicit gateway on a host is blamed on the subnet's gateway setting (checkRoutedLayout)
        if (!explicitGateway(s.index)) err(`${path}.address`, `${h.address} is the gateway of subnet "${s.name}"${fwHost ? `: ${fwHost.name}'s LAN interface holds it` : ""}`, "pick another address or set the subnet's gateway");
      } else if (kvmHostIp(s) === ip) {
        err(`${path}.address`, `${h.address} is the last usable address of subnet "${s.name}": the KVM host (and the lab's hypervisor) holds it to reach the hosts on-link`, "pick another address");
      }
    }
    if (h.publicAddress !== undefined && parseIp(h.publicAddress) === undefined) {
      err(`${path}.publicAddress`, `"${h.publicAddress}" is not an IPv4 address`);
    }
    const home = ip === undefined ? undefined : subnetOf(ip);
    // the firewall VM's NICs are its WAN and LAN sides; its own address may be on wg0
    if (h.vm && home && spec.network.subnets[home.index]!.libvirt === "none" && h !== fwHost) {
      err(`${path}.vm`, `${h.name} is a VM but its subnet "${home.name}" has libvirt: none`, `set network.subnets[${home.index}].libvirt to ${fwHost ? "bridge" : "nat or bridge"}`);
    }
    if (h.vm && h.os === "debian" && h.roles.includes("gateway")) {
      warn(`${path}.vm`, "the gateway is a public VPS; Terraform's libvirt VMs live in the LAN");
    }
    const disks = new Set<string>();
    h.vm?.dataDisks.forEach((d, j) => {
      if (d.name === "root") err(`${path}.vm.dataDisks[${j}].name`, `"root" is the name of ${h.name}'s root volume`, "give the data disk another name");
      else if (disks.has(d.name)) err(`${path}.vm.dataDisks[${j}].name`, `data disk "${d.name}" is listed twice`);
      disks.add(d.name);
    });
    checkPorts(c, h, path);
  });
  return { byName, byAddress, hostIps, vipNames: new Map() };
}
