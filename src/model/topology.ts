// Derived, read-only views of a valid spec that renderers share: who holds which role,
// which subnet a host sits in, which hosts back which VIP. Computed once per render.
import type { Host, Role, Spec, Subnet, Vip } from "./schema.js";
import { cidrOf, contains, formatIp, ipOf } from "./net.js";

export class Topology {
  readonly hostsByName: ReadonlyMap<string, Host>;
  readonly servers: readonly Host[];
  readonly agents: readonly Host[];
  /** Agents that take ingress traffic: never the storage node. */
  readonly ingressBackends: readonly Host[];

  constructor(
    readonly spec: Spec,
    /** Resolved public keys per host name (global + host's own + generated). */
    readonly sshKeys: ReadonlyMap<string, readonly string[]> = new Map(),
  ) {
    this.hostsByName = new Map(spec.hosts.map((h) => [h.name, h]));
    this.servers = this.withRole("k3s-server");
    this.agents = this.withRole("k3s-agent").filter((h) => !h.roles.includes("k3s-server"));
    this.ingressBackends = this.agents.filter((h) => !h.roles.includes("storage"));
  }

  withRole(role: Role): Host[] {
    return this.spec.hosts.filter((h) => h.roles.includes(role));
  }

  host(name: string): Host {
    const h = this.hostsByName.get(name);
    if (!h) throw new Error(`internal: unknown host ${name} passed validation`);
    return h;
  }

  subnetOf(address: string): Subnet | undefined {
    const ip = ipOf(address);
    return this.spec.network.subnets.find((s) => contains(cidrOf(s.cidr), ip));
  }

  prefixOf(address: string): number {
    const s = this.subnetOf(address);
    return s ? cidrOf(s.cidr).prefix : 32;
  }

  gatewayOf(address: string): string | undefined {
    const s = this.subnetOf(address);
    if (!s) return undefined;
    if (s.gateway) return s.gateway;
    return formatIp(cidrOf(s.cidr).network + 1);
  }

  vip(name: string): Vip | undefined {
    return this.spec.vips.find((v) => v.name === name);
  }

  vipHolders(vip: Vip): Host[] {
    return this.withRole(vip.role);
  }

  get apiVip(): Vip {
    const v = this.vip(this.spec.k3s.apiVip);
    if (!v) throw new Error("internal: k3s.apiVip passed validation but names no VIP");
    return v;
  }

  fqdn(name: string): string {
    return `${name}.${this.spec.domain}`;
  }

  /** Internal DNS servers, first in every resolver list (the identity host). */
  get dnsServers(): string[] {
    return this.withRole("identity").map((h) => h.address);
  }

  sshUser(h: Host): string {
    return h.ssh?.user ?? this.spec.ssh.user;
  }

  keysOf(h: Host): readonly string[] {
    return this.sshKeys.get(h.name) ?? [];
  }

  /** The WireGuard tunnel's subnet: the one holding the gateway's tunnel address. Not a LAN segment. */
  get tunnelSubnet(): Subnet | undefined {
    const gw = this.withRole("gateway")[0];
    return this.spec.wireguard && gw ? this.subnetOf(gw.address) : undefined;
  }

  /** The subnets that are LAN segments (every subnet but the tunnel's), each with the firewall's interface on it. */
  get lanSegments(): Array<{ subnet: Subnet; firewallInterface: string; gateway: string }> {
    const tunnel = this.tunnelSubnet;
    return this.spec.network.subnets
      .filter((s) => s !== tunnel)
      .map((s, i) => ({ subnet: s, firewallInterface: s.firewallInterface ?? `eth${i + 1}`, gateway: s.gateway ?? formatIp(cidrOf(s.cidr).network + 1) }));
  }

  /**
   * Where the operator's machine (the libvirt host, on the LAN segments) reaches a host
   * for SSH when the spec names no ssh.host. A firewall whose spec address is its own
   * WireGuard address (the tunnel's subnet) has that address only once the wireguard
   * phase has run, so a first apply could never connect: it is reached on its gateway
   * address of the first LAN segment, as its management rules allow (firewall.management).
   */
  managementAddress(h: Host): string {
    if (h.ssh?.host) return h.ssh.host;
    const tunnel = this.tunnelSubnet;
    const isFirewall = this.spec.firewall?.host === h.name && h.roles.includes("firewall");
    const lan = this.lanSegments[0];
    if (isFirewall && tunnel && lan && this.subnetOf(h.address) === tunnel) return lan.gateway;
    return h.address;
  }

  /** What the LAN peer dials: the spec's endpoint, else the gateway's public address. */
  get wireguardEndpoint(): string | undefined {
    return this.spec.wireguard?.endpoint ?? this.withRole("gateway")[0]?.publicAddress;
  }

  /** The host that serves internal DNS (dns.engine on the identity host). */
  get dnsHost(): Host | undefined {
    return this.spec.identity ? this.hostsByName.get(this.spec.identity.host) : this.withRole("identity")[0];
  }

  /** Resolves a rule endpoint: subnet, host or VIP name, CIDR, or "any". */
  resolveEndpoint(ref: string): string | undefined {
    if (ref === "any") return "any";
    const subnet = this.spec.network.subnets.find((s) => s.name === ref);
    if (subnet) return subnet.cidr;
    const host = this.hostsByName.get(ref);
    if (host) return `${host.address}/32`;
    const vip = this.vip(ref);
    if (vip) return `${vip.address}/32`;
    if (/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(ref)) return ref.includes("/") ? ref : `${ref}/32`;
    return undefined;
  }
}
