// base: hostname, the internal DNS as first resolver, sysctl, swap off, time sync, the
// login user's authorized keys (every key of the spec plus fmc's admin key, in fmc's own
// block; keys outside it are the operator's and stay), node_exporter where Prometheus
// scrapes one by address, and on OSes that run a host firewall by default (firewalld on
// AlmaLinux) the ports of the host's roles, node_exporter's and VRRP.
import type { Host, Spec } from "../model/schema.js";
import { FAMILIES } from "../hosts/os.js";
import type { HostFacts, OsFamilyName } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { hostnameChanges, swapOffChange } from "../ops/host.js";
import { INSTALL_TIMEOUT_S, packageChange } from "../ops/package.js";
import { markingReload, pendingFacts, reloadPending, serviceChange } from "../ops/service.js";
import { homeOf, inHome } from "../ops/user.js";
import { authorizedKeysChange } from "../ops/keys.js";
import { sysctlChanges } from "../ops/sysctl.js";
import { moduleChanges, moduleGuards, type KernelModule } from "../ops/modules.js";
import { K3S_SYSCTL } from "../render/ignition.js";
import { FLATCAR_RESOLVED_DROPIN, flatcarResolverFile, IPA_RESOLVER_FILES, ipaResolverFile } from "../render/resolver.js";
import type { Change, OpContext } from "../ops/change.js";
import { guardedChange, type GuardedSpec } from "../ops/guarded.js";
import { rolePorts } from "../model/checks.js";
import { sh } from "../render/quote.js";
import { NODE_EXPORTER_PORT, nodeExporterHosts, nodeExporterSkipped } from "../render/prometheus.js";
import { script, slow } from "../hosts/command.js";
import { FmcError } from "../errors.js";
import { ntpSources } from "../model/ntp.js";
import type { Phase, PhaseContext } from "./phase.js";

const SYSCTL_FILE = "/etc/sysctl.d/90-fmc.conf";
export const FIREWALLD_GUARD = "base:firewalld";

function sysctlFor(host: Host): Record<string, string> {
  const out: Record<string, string> = {};
  const roles = new Set(host.roles);
  if (roles.has("k3s-server") || roles.has("k3s-agent")) {
    for (const line of K3S_SYSCTL) {
      const [k, v] = line.split("=").map((x) => x.trim());
      out[k!] = v!;
    }
  }
  if (roles.has("loadbalancer") || roles.has("edge")) out["net.ipv4.ip_nonlocal_bind"] = "1";
  // the firewall's forwarding is the firewall phase's (it runs first: the LAN's way out)
  if (roles.has("gateway")) out["net.ipv4.ip_forward"] = "1";
  return out;
}

/** What a K3s node loads on AlmaLinux and Debian; Flatcar gets the same file from Ignition. */
const K3S_MODULES_FILE = "/etc/modules-load.d/fmc-k3s.conf";
const K3S_MODULES: readonly KernelModule[] = [
  { name: "br_netfilter", why: "the net.bridge sysctl keys K3s needs (bridge-nf-call-iptables) do not exist, so pod traffic bypasses iptables" },
  { name: "overlay", why: "containerd's overlayfs snapshotter cannot run" },
];
const isK3sNode = (host: Host) => host.roles.some((r) => r === "k3s-server" || r === "k3s-agent");

const TIME_PACKAGE: Record<string, string | undefined> = { "debian-like": "systemd-timesyncd", "rhel-like": "chrony", flatcar: undefined };

const AUTHORIZED_KEYS = ".ssh/authorized_keys";

/** The login user's authorized_keys, in its home as the host's passwd has it. */
function authorizedKeysPath(host: Host, facts: HostFacts, user: string): string {
  const home = homeOf(facts, user);
  if (!home) throw new FmcError("NO_SUCH_USER", `${host.name}: the login user ${user} is not in the host's passwd (getent passwd ${user} finds nothing)`, "check ssh.user (or the host's ssh.user) in the spec");
  return `${home}/${AUTHORIZED_KEYS}`;
}

/**
 * What firewalld must let in on a host: SSH, every port its roles listen on (rolePorts),
 * and VRRP (IP protocol 112) where it holds a VIP: without VRRP each Keepalived hears no
 * peer and both holders keep the VIP.
 */
export function firewalldOpenings(spec: Spec, host: Host): { ports: string[]; protocols: string[] } {
  const ports = new Set([`${host.ssh?.port ?? spec.ssh.port}/tcp`]);
  for (const role of new Set(host.roles)) {
    // the stats page listens on 127.0.0.1 only
    for (const [port, , setting] of rolePorts(spec, role)) if (setting !== "loadBalancer.statsPort") ports.add(port);
  }
  if (runsNodeExporter(spec, host)) ports.add(`${NODE_EXPORTER_PORT}/tcp`);
  const sorted = [...ports].sort((a, b) => parseInt(a, 10) - parseInt(b, 10) || a.localeCompare(b));
  return { ports: sorted, protocols: spec.vips.some((v) => host.roles.includes(v.role)) ? ["vrrp"] : [] };
}

/**
 * node_exporter from the distribution's packages, where Prometheus scrapes it by address
 * (nodeExporterHosts): Debian's prometheus-node-exporter (its unit listens on :9100, and
 * the package starts it); on AlmaLinux EPEL's node-exporter, called
 * golang-github-prometheus-node-exporter in older EPEL releases, whose unit is
 * prometheus-node-exporter.service on EL9 and node_exporter.service in older builds: the
 * one the installed package brought is the one enabled and started.
 */
export const NODE_EXPORTER = {
  "debian-like": { packages: ["prometheus-node-exporter"], units: ["prometheus-node-exporter.service"] },
  "rhel-like": { packages: ["node-exporter", "golang-github-prometheus-node-exporter"], units: ["prometheus-node-exporter.service", "node_exporter.service"] },
} as const;

function runsNodeExporter(spec: Spec, host: Host): boolean {
  return nodeExporterHosts(spec).some((h) => h.name === host.name);
}

function nodeExporterChanges(facts: HostFacts, family: OsFamilyName, c: OpContext): Change[] {
  if (family === "flatcar") return [];
  const ne = NODE_EXPORTER[family];
  const out: Change[] = [];
  let install: Change | undefined;
  if (family === "debian-like") install = packageChange(facts, FAMILIES[family], ne.packages, c);
  else if (!ne.packages.some((p) => facts.packages.get(p))) {
    const run = "dnf install -y epel-release && { dnf install -y node-exporter || dnf install -y golang-github-prometheus-node-exporter; }";
    install = {
      host: c.host,
      phase: c.phase,
      title: "install node_exporter (EPEL)",
      commands: [slow(script(run, "dnf install -y epel-release, then node-exporter (golang-github-prometheus-node-exporter in older EPEL)"), INSTALL_TIMEOUT_S)],
      notes: ["adds the EPEL repository (epel-release) to the host's package sources"],
      refreshesFacts: true,
    };
  }
  if (install) out.push(install);
  // before the install nothing tells which unit the package brings: the EL9 name, and the plan is made again after it
  const present = ne.units.find((u) => (facts.units.get(u)?.enabled ?? "not-found") !== "not-found");
  if (!present && !install) {
    throw new FmcError("NODE_EXPORTER", `${c.host}: node_exporter's package is installed but none of ${ne.units.join(", ")} exists`, "check the package's unit with systemctl list-unit-files '*node*exporter*'");
  }
  const svc = serviceChange(facts, { unit: present ?? ne.units[0], enabled: true, running: true, installing: !!install }, c);
  if (svc) out.push(svc);
  return out;
}

/**
 * Why fmc opens ports in firewalld rather than replacing it with its own nftables on these
 * hosts: firewalld is the distribution's default that AlmaLinux operators, FreeIPA's
 * documentation and cockpit expect, it already keeps SSH open, and adding to it touches
 * nothing else on the host; a replacement would make fmc own every rule of every host
 * and take firewalld away from people who use it. The firewall between subnets is still
 * the firewall host's nftables; this only lets the host's own services be reached.
 * Runtime and permanent configuration are both changed, so no reload drops a connection;
 * a firewalld that is enabled but not running gets the permanent configuration offline.
 */
function firewalldGuarded(spec: Spec, host: Host): GuardedSpec {
  const { ports, protocols } = firewalldOpenings(spec, host);
  const items = [...ports, ...protocols].map(sh).join(" ");
  const zone = `z=$(firewall-cmd --get-zone-of-interface=${sh(host.interface)} 2>/dev/null) || z=$(firewall-cmd --get-default-zone)`;
  const add = (tool: string) => [
    `${tool} --zone="$z"${ports.map((p) => ` --add-port=${sh(p)}`).join("")} >/dev/null`,
    ...(protocols.length ? [`${tool} --zone="$z"${protocols.map((p) => ` --add-protocol=${sh(p)}`).join("")} >/dev/null`] : []),
  ];
  return {
    id: FIREWALLD_GUARD,
    title: `open ${[...ports, ...protocols].join(" ")} in firewalld`,
    unless: [
      "command -v firewall-cmd >/dev/null || exit 0",
      "if systemctl is-active --quiet firewalld; then",
      `  ${zone} || exit 1`,
      '  live=" $(firewall-cmd --zone="$z" --list-ports) $(firewall-cmd --zone="$z" --list-protocols) "',
      '  perm=" $(firewall-cmd --permanent --zone="$z" --list-ports) $(firewall-cmd --permanent --zone="$z" --list-protocols) "',
      "elif systemctl is-enabled --quiet firewalld; then",
      "  z=$(firewall-offline-cmd --get-default-zone) || exit 1",
      '  perm=" $(firewall-offline-cmd --zone="$z" --list-ports) $(firewall-offline-cmd --zone="$z" --list-protocols) "; live=$perm',
      "else exit 0; fi",
      `for x in ${items}; do`,
      '  case "$live" in *" $x "*) ;; *) exit 1 ;; esac',
      '  case "$perm" in *" $x "*) ;; *) exit 1 ;; esac',
      "done",
    ].join("\n"),
    run: [
      "set -e",
      "if systemctl is-active --quiet firewalld; then",
      `  ${zone}`,
      ...add("firewall-cmd").map((l) => `  ${l}`),
      ...add("firewall-cmd --permanent").map((l) => `  ${l}`),
      "else",
      "  z=$(firewall-offline-cmd --get-default-zone)",
      ...add("firewall-offline-cmd").map((l) => `  ${l}`),
      "fi",
    ].join("\n"),
    notes: ["firewalld: adds to the zone of the host's interface, runtime and permanent, without a reload"],
  };
}

/**
 * The host's resolvers: the internal DNS first, then network.upstreamDns as fallback
 * (a resolver that does not answer is skipped, so a fresh host installs its packages
 * before the internal DNS runs). The VPS sits outside the LAN, where the internal DNS is
 * not reachable: upstream only. At most three, as resolv.conf allows.
 */
function resolversFor(pc: PhaseContext, host: Host): string[] {
  const { spec, topo } = pc.render;
  if (!topo.dnsServers.length) return [];
  const outside = host.roles.includes("gateway");
  return [...new Set([...(outside ? [] : topo.dnsServers), ...spec.network.upstreamDns])].slice(0, 3);
}

/**
 * The resolver files base writes (src/render/resolver.ts says who owns the resolver):
 * nothing once FreeIPA's installer made the resolver its own; on Flatcar the same
 * systemd-resolved drop-in Ignition wrote (the internal DNS is the link's, from networkd);
 * elsewhere the OS family's files.
 */
function resolverFiles(pc: PhaseContext, host: Host, facts: HostFacts): Array<{ path: string; content: string }> {
  const { spec, topo } = pc.render;
  if (!topo.dnsServers.length || ipaResolverFile(facts)) return [];
  if (facts.os.family === "flatcar") return [flatcarResolverFile(spec.network.upstreamDns)];
  return FAMILIES[facts.os.family].resolverFiles?.(resolversFor(pc, host), spec.domain) ?? [];
}

export const base: Phase = {
  name: "base",
  description: "hostname, resolver, sysctl, swap, time sync, authorized keys, node_exporter",
  hosts: (pc) => pc.render.spec.hosts,
  warnings(pc) {
    return nodeExporterSkipped(pc.render.spec).map((h) => `${h.name} runs Flatcar, which has no node_exporter package: Prometheus does not scrape it (run node_exporter as a container there yourself)`);
  },
  facts(pc, host) {
    const user = pc.loginUser(host);
    const files = ["/etc/hostname", SYSCTL_FILE, inHome(user, AUTHORIZED_KEYS), ...(isK3sNode(host) ? [K3S_MODULES_FILE] : [])];
    for (const f of Object.values(FAMILIES)) {
      files.push(f.timeConfig({ pools: [], servers: [] }).path, ...(f.resolverFiles?.([], "") ?? []).map((r) => r.path));
    }
    files.push(FLATCAR_RESOLVED_DROPIN, ...IPA_RESOLVER_FILES);
    const exporter = runsNodeExporter(pc.render.spec, host);
    return {
      files: new Set([...files, ...pendingFacts(...Object.values(FAMILIES).map((f) => f.timeService)).files]),
      units: new Set([...Object.values(FAMILIES).map((f) => f.timeService), ...(exporter ? Object.values(NODE_EXPORTER).flatMap((n) => n.units) : [])]),
      packages: new Set([...Object.values(TIME_PACKAGE).filter((p): p is string => !!p), ...(exporter ? Object.values(NODE_EXPORTER).flatMap((n) => n.packages) : [])]),
      sysctl: new Set(Object.keys(sysctlFor(host))),
      // the login user's home (its authorized_keys is there)
      users: new Set([user]),
      // read on every host; it answers "nothing to do" where firewall-cmd is absent
      guards: new Map([[FIREWALLD_GUARD, firewalldGuarded(pc.render.spec, host).unless], ...(isK3sNode(host) ? moduleGuards(K3S_MODULES) : [])]),
    };
  },
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const { spec, topo } = pc.render;
    const c = { host: host.name, phase: "base", mask: pc.mask };
    const family = FAMILIES[facts.os.family];
    const out: Change[] = [...hostnameChanges(facts, host.name, c)];
    for (const f of resolverFiles(pc, host, facts)) {
      const ch = fileChange(facts, f, c);
      if (ch) out.push(ch);
    }
    // modules first: loading br_netfilter brings the net.bridge keys the sysctl file sets
    // (apply reads the host again after the load)
    if (isK3sNode(host) && facts.os.family !== "flatcar") out.push(...moduleChanges(facts, { path: K3S_MODULES_FILE, purpose: "kernel modules K3s needs", modules: K3S_MODULES }, c));
    out.push(...sysctlChanges(facts, SYSCTL_FILE, sysctlFor(host), c));
    const swap = swapOffChange(facts, c);
    if (swap) out.push(swap);
    const pkg = TIME_PACKAGE[family.name];
    const install = pkg ? packageChange(facts, family, [pkg], c) : undefined;
    if (install) out.push(install);
    const time = fileChange(facts, family.timeConfig(ntpSources(spec, host.os)), c);
    if (time) out.push(markingReload(time, family.timeService));
    // Time services skip containers by design (ConditionVirtualization), so only the
    // enabled state is managed; on real hosts enabling starts it at boot.
    const svc = serviceChange(facts, { unit: family.timeService, enabled: true, reload: !!time, pending: reloadPending(facts, family.timeService), reloadBy: "restart", installing: !!install }, c);
    if (svc) out.push(svc);
    // fmc's block of the login user's keys; the operator's own lines stay
    const user = pc.loginUser(host);
    const keys = authorizedKeysChange(facts, { user, path: authorizedKeysPath(host, facts, user), keys: topo.keysOf(host), group: user === "root" ? "root" : user, keepOtherAdminKeys: spec.ssh.generatedKey }, c);
    if (keys) out.push(keys);
    if (runsNodeExporter(spec, host)) out.push(...nodeExporterChanges(facts, family.name, c));
    if (family.hostFirewall === "firewalld") {
      const open = guardedChange(facts, firewalldGuarded(spec, host), c);
      if (open) out.push(open);
    }
    return out;
  },
};
