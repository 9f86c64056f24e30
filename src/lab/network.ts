// The lab's network, planned from the spec before anything is created (pure, so it is
// unit-tested): one L2 segment (a bridge in the lab's switch namespace) per LAN subnet,
// the firewall host routing between them as every subnet's gateway, and outside them a
// tiny internet: the VPS's public /24 and the firewall's uplink, joined by a router
// namespace named `internet` that has no route into the private network.
//
// This machine plays the seed's hypervisor: it holds the last usable address of each
// segment (and of the public /24) and reaches every host on-link for SSH, never through
// the firewall. When the firewall host is not part of the lab (no firewall in the spec,
// or `lab up --only` left it out), a plain router namespace stands in for it so the
// segments still reach each other.
import type { Host, Spec } from "../model/schema.js";
import type { Topology } from "../model/topology.js";
import { broadcast, cidrOf, contains, formatIp, ipOf, overlaps } from "../model/net.js";
import { FmcError } from "../errors.js";

export interface Segment {
  /** Bridge name inside the switch namespace. */
  readonly bridge: string;
  /** What it is, for messages and docs: a subnet name, "public" or "uplink". */
  readonly name: string;
  readonly cidr: string;
  /** This machine's address on it (address/prefix), if it has one. */
  readonly rootAddress?: string;
  /**
   * When set, this machine reaches only these prefixes over the segment (its address is then a
   * /32): the public segment stands for real internet addresses, and a route to the whole /24
   * would take this machine's traffic to that range's other hosts while the lab is up.
   */
  readonly rootRoutes?: readonly string[];
}

export interface Nic {
  readonly ifname: string;
  readonly bridge: string;
  /** address/prefix */
  readonly address: string;
}

export interface HostNet {
  readonly name: string;
  readonly nics: readonly Nic[];
  readonly defaultVia?: string;
  /** Where this machine reaches the host for SSH. */
  readonly sshAddress: string;
}

export interface LabNet {
  readonly segments: readonly Segment[];
  readonly hosts: readonly HostNet[];
  /** The router namespace standing in for an absent firewall host. */
  readonly router?: { readonly nics: readonly Nic[] };
  /**
   * The `internet` namespace: the public /24's router and a client on it, and, when the
   * firewall host is in the lab, a package mirror at an internet address of its own (the
   * lab hosts' only apt source, so a LAN host installs packages only once the firewall
   * forwards and masquerades its traffic, as on real hardware).
   */
  readonly internet?: { readonly nics: readonly Nic[]; readonly clientAddress: string; readonly mirror?: string };
  /** The prefixes this machine routes into the lab (checked free before anything is made). */
  readonly rootPrefixes: readonly string[];
}

/** The lab's package mirror on its internet: documentation ranges, never private ones (the firewall's egress excludes those). */
const MIRROR_CANDIDATES = ["192.0.2.80", "198.18.0.80", "203.0.113.80"];

/** The firewall's WAN link to the lab's internet: a /30 that meets no spec subnet. */
const UPLINK_CANDIDATES = ["198.51.100.0/30", "192.0.2.0/30", "100.64.0.0/30"];

const withPrefix = (ip: number, cidr: string) => `${formatIp(ip)}/${cidrOf(cidr).prefix}`;
const lastUsable = (cidr: string) => broadcast(cidrOf(cidr)) - 1;

export function planLabNet(spec: Spec, topo: Topology, hosts: readonly Host[]): LabNet {
  const inLab = new Set(hosts.map((h) => h.name));
  const taken = new Set<number>([...spec.hosts.map((h) => ipOf(h.address)), ...spec.vips.map((v) => ipOf(v.address))]);
  const fw = spec.firewall && inLab.has(spec.firewall.host) ? topo.host(spec.firewall.host) : undefined;
  const gateway = topo.withRole("gateway").find((h) => inLab.has(h.name) && h.publicAddress);

  const segments: Segment[] = topo.lanSegments.map(({ subnet }, i) => {
    const root = lastUsable(subnet.cidr);
    if (taken.has(root)) {
      throw new FmcError("LAB_ADDRESS", `${formatIp(root)} is used in the spec; the lab needs it for this machine's address on subnet ${subnet.name}`, "the lab takes each subnet's last usable address, as a hypervisor would");
    }
    return { bridge: `s${i}`, name: subnet.name, cidr: subnet.cidr, rootAddress: withPrefix(root, subnet.cidr) };
  });
  const segmentOf = (address: string) => {
    const i = topo.lanSegments.findIndex(({ subnet }) => contains(cidrOf(subnet.cidr), ipOf(address)));
    return i < 0 ? undefined : { segment: segments[i]!, lan: topo.lanSegments[i]! };
  };

  // the internet: the VPS's public /24, and the firewall's uplink
  let internet: LabNet["internet"];
  let uplink: { cidr: string; router: string; firewall: string } | undefined;
  const pub = gateway ? `${formatIp(ipOf(gateway.publicAddress!) & 0xffffff00)}/24` : undefined;
  if (gateway && pub) {
    if (overlaps(cidrOf(pub), cidrOf(spec.network.cidr))) {
      throw new FmcError("LAB_ADDRESS", `${gateway.name}'s publicAddress ${gateway.publicAddress} is inside network.cidr ${spec.network.cidr}`, "a public address lies outside the private network");
    }
    const net = cidrOf(pub).network;
    const router = [net + 1, net + 2].find((a) => formatIp(a) !== gateway.publicAddress)!;
    const rootPub = [net + 254, net + 253].find((a) => formatIp(a) !== gateway.publicAddress)!;
    // this machine only needs the gateway (SSH to its public address)
    segments.push({ bridge: "pub", name: "public", cidr: pub, rootAddress: `${formatIp(rootPub)}/32`, rootRoutes: [`${gateway.publicAddress}/32`] });
    const nics: Nic[] = [{ ifname: "fmclab-pub", bridge: "pub", address: withPrefix(router, pub) }];
    if (fw) {
      const free = UPLINK_CANDIDATES.find((c) => !overlaps(cidrOf(c), cidrOf(spec.network.cidr)) && !overlaps(cidrOf(c), cidrOf(pub)))!;
      const n = cidrOf(free).network;
      uplink = { cidr: free, router: formatIp(n + 1), firewall: withPrefix(n + 2, free) };
      segments.push({ bridge: "uplink", name: "uplink", cidr: free });
      nics.push({ ifname: "fmclab-up", bridge: "uplink", address: withPrefix(n + 1, free) });
    }
    const used = [spec.network.cidr, pub, ...(uplink ? [uplink.cidr] : [])].map(cidrOf);
    const mirror = fw && uplink ? MIRROR_CANDIDATES.find((m) => !used.some((c) => contains(c, ipOf(m)))) : undefined;
    internet = { nics, clientAddress: formatIp(router), ...(mirror ? { mirror } : {}) };
  }

  const plans: HostNet[] = hosts.map((h) => {
    if (fw && h.name === fw.name) {
      const nics: Nic[] = topo.lanSegments.map((l, i) => ({ ifname: l.firewallInterface, bridge: segments[i]!.bridge, address: withPrefix(ipOf(l.gateway), l.subnet.cidr) }));
      if (uplink) nics.unshift({ ifname: spec.firewall!.wanInterface, bridge: "uplink", address: uplink.firewall });
      if (!nics.length) throw new FmcError("LAB_ADDRESS", `${h.name} is the firewall but the spec has no LAN subnet`);
      return { name: h.name, nics, defaultVia: uplink?.router, sshAddress: nics.find((n) => n.bridge !== "uplink")!.address.split("/")[0]! };
    }
    if (gateway && h.name === gateway.name && internet) {
      const ifname = spec.wireguard?.publicInterface ?? h.interface;
      return { name: h.name, nics: [{ ifname, bridge: "pub", address: `${h.publicAddress}/24` }], defaultVia: internet.clientAddress, sshAddress: h.publicAddress! };
    }
    const at = segmentOf(h.address);
    if (!at) {
      throw new FmcError("LAB_ADDRESS", `${h.name} (${h.address}) is not on a LAN subnet, so the lab has no segment for it`, "only the firewall and the VPS may sit in the WireGuard tunnel's subnet");
    }
    return { name: h.name, nics: [{ ifname: h.interface, bridge: at.segment.bridge, address: withPrefix(ipOf(h.address), at.segment.cidr) }], defaultVia: at.lan.gateway, sshAddress: h.address };
  });

  // no firewall in the lab: a plain router holds every gateway address
  const router = fw || segments.length === 0 ? undefined : { nics: topo.lanSegments.map((l, i) => ({ ifname: `fmclab-r${i}`, bridge: segments[i]!.bridge, address: withPrefix(ipOf(l.gateway), l.subnet.cidr) })) };
  return { segments, hosts: plans, router, internet, rootPrefixes: segments.filter((s) => s.rootAddress).flatMap((s) => s.rootRoutes ?? [s.cidr]) };
}
