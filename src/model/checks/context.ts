// What every semantic check shares: the spec, how problems are reported, and the indexes
// of names and addresses that earlier checks build for later ones (a VIP on a host's
// address, a firewall rule naming a subnet). Each check appends problems; none stops the
// others, so one run shows every mistake.
import type { Host, Role, Spec } from "../schema.js";
import { networkOf, parseCidr, parseIp, type Cidr } from "../net.js";
import { didYouMean, type Problem } from "../../errors.js";

/**
 * A problem from checks. `aggregateOf` names the list whose item count the message depends
 * on ("no host has role storage"): when a broken item of that list was dropped to keep
 * checking, the message could be an echo of that item's own error, so it is left out.
 */
export type CheckProblem = Problem & { readonly aggregateOf?: string };

/** Whether a spec path was written by the user (rather than filled in by a default). */
export type Explicit = (path: string) => boolean;

/** Reports one problem at a spec path. */
export type Report = (path: string, message: string, hint?: string) => void;

/** The spec under check and the ways to report on it. */
export interface Checker {
  readonly spec: Spec;
  readonly explicit: Explicit;
  readonly err: Report;
  readonly warn: Report;
  /** An error whose message depends on how many items `list` has (see CheckProblem). */
  readonly errOf: (list: string) => Report;
  /** A warning whose message depends on how many items `list` has. */
  readonly warnOf: (list: string) => Report;
}

export function newChecker(spec: Spec, explicit: Explicit): { checker: Checker; problems: CheckProblem[] } {
  const problems: CheckProblem[] = [];
  const report = (severity: "error" | "warning", aggregateOf?: string): Report => (path, message, hint) =>
    void problems.push(aggregateOf === undefined ? { severity, path, message, hint } : { severity, path, message, hint, aggregateOf });
  return {
    problems,
    checker: { spec, explicit, err: report("error"), warn: report("warning"), errOf: (list) => report("error", list), warnOf: (list) => report("warning", list) },
  };
}

/** A subnet whose CIDR parsed, with its index in network.subnets. */
export interface Subnet {
  readonly name: string;
  readonly cidr: Cidr;
  readonly index: number;
}

/** The network as the checks understand it (built by checkNetwork). */
export interface Layout {
  /** network.cidr, when it parses. */
  readonly net: Cidr | undefined;
  readonly subnets: readonly Subnet[];
  /** Subnet names and their index in network.subnets. */
  readonly subnetNames: ReadonlyMap<string, number>;
  subnetOf(ip: number): Subnet | undefined;
  /** The host that routes between the subnets (firewall.host, with role firewall). */
  readonly fwHost: Host | undefined;
  /** Whether a subnet is a LAN segment (the WireGuard tunnel's subnet is not). */
  isLan(index: number): boolean;
  /** The KVM host's address on a subnet Terraform provides with a firewall: the last usable one. */
  kvmHostIp(s: Subnet): number | undefined;
  /** Whether a LAN subnet behind the firewall sets its gateway itself. */
  explicitGateway(index: number): boolean;
}

/** Hosts and VIPs by name and address (built by checkHosts, completed by checkVips). */
export interface Names {
  /** Host names and their index in hosts. */
  readonly byName: Map<string, number>;
  /** Who holds an address: a host's name, or "VIP name". */
  readonly byAddress: Map<number, string>;
  /** Each host's address, when it parses. */
  readonly hostIps: Map<string, number>;
  /** VIP names and their index in vips. */
  readonly vipNames: Map<string, number>;
}

/** A reference to a host that must have a role (storage.host, database.host, …). */
export function needHost(c: Checker, names: Names, path: string, name: string, role: Role): void {
  const i = names.byName.get(name);
  if (i === undefined) return c.err(path, `no host named "${name}"`, didYouMean(name, names.byName.keys()));
  if (!c.spec.hosts[i]!.roles.includes(role)) c.err(path, `host ${name} does not have role ${role}`, `add ${role} to hosts[${i}].roles`);
}

/** A subnet's gateway: the one it sets, or its first address. */
export function gatewayIp(spec: Spec, index: number, cidr: Cidr): number {
  const g = spec.network.subnets[index]?.gateway;
  return g !== undefined ? (parseIp(g) ?? -1) : cidr.network + 1;
}

/**
 * Parses a CIDR, reporting a bad one. A CIDR with host bits set is reported once and then
 * used as the network it names, so the hosts inside it don't each get an echo error.
 */
export function cidrAt(text: string, path: string, err: Report): Cidr | undefined {
  const c = parseCidr(text);
  if (c === undefined) {
    err(path, `"${text}" is not an IPv4 CIDR`, "write it like 10.17.4.0/24");
    return undefined;
  }
  if (typeof c === "string") {
    err(path, `${text}: ${c}`);
    return networkOf(text);
  }
  return c;
}
