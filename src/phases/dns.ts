// dns: the internal DNS on the DNS host (topo.dnsHost), forward and reverse.
// bind9: the package, named's options (listen on the host and 127.0.0.1, recursion for the
// private network only, forwarding to network.upstreamDns, DNSSEC validation), the zones
// declared and written, each file checked by named-checkconf / named-checkzone before it
// goes live, then a reload. A zone keeps the serial it has while its records are unchanged,
// so a re-run plans nothing; a change raises the serial (render/dns.ts: zoneFor).
// freeipa (AlmaLinux): /etc/hosts with the real address, the passwords as 0600 files, the
// rendered install script run while `ipactl status` fails, then the record script.
import { BIND_LAYOUTS, IPA_RECORDS_SCRIPT, IPA_SECRET_DIR, IPA_SERVER_SCRIPT, etcHosts, ipaRecords, ipaServerInstall, zoneFor, zones } from "../render/dns.js";
import { FAMILIES } from "../hosts/os.js";
import { script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { HostFacts } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { guardedChange } from "../ops/guarded.js";
import { packageChange } from "../ops/package.js";
import { markingReload, pendingFacts, reloadPending, serviceChange } from "../ops/service.js";
import type { Change } from "../ops/change.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";
import { FmcError } from "../errors.js";

const NAMED = "named.service";
const RESOLV_CONF = "/etc/resolv.conf";
export const IPA_INSTALLED_GUARD = "dns:ipa-installed";
export const IPA_RECORDS_GUARD = "dns:ipa-records";
const IPA_RECORDS_APPLIED = "/var/lib/fmc/ipa-records.applied";
const IPA_SECRETS = ["ipa-directory-manager", "ipa-admin"] as const;

/** The nameservers a resolv.conf names. */
function nameservers(text: string | undefined): string[] {
  return (text ?? "").split("\n").map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1]).filter((x): x is string => !!x);
}

/**
 * The DNS host cannot resolve through itself before its DNS runs (the base phase already
 * made it its own resolver): a package install then uses the bootstrap resolvers
 * (network.upstreamDns) and puts the resolver back, whatever the install's outcome.
 */
export function withBootstrapResolver(install: Command, upstream: readonly string[]): Command {
  const conf = upstream.map((d) => `nameserver ${d}`).join("\n");
  const body = [
    `b=$(mktemp ${RESOLV_CONF}.fmc-bootstrap.XXXXXX)`,
    // written in place: resolv.conf may be a bind mount or a symlink
    `cat ${RESOLV_CONF} > "$b" && trap 'cat "$b" > ${RESOLV_CONF}; rm -f "$b"' EXIT`,
    `printf '%s\\n' ${quote("# fmc: bootstrap resolver while the internal DNS is not up")} ${quote(conf)} > ${RESOLV_CONF}`,
    install.shell,
  ].join("\n");
  return script(body, `${install.display}, resolving through ${upstream.join(", ")} meanwhile`);
}

function selfResolving(host: Host, facts: HostFacts): boolean {
  const ns = nameservers(facts.files.get(RESOLV_CONF)?.content);
  return ns.length > 0 && ns.every((n) => n === host.address || n.startsWith("127."));
}

function planBind9(pc: PhaseContext, host: Host, facts: HostFacts, now: Date): Change[] {
  const c = { host: host.name, phase: "dns", mask: pc.mask };
  const family = facts.os.family;
  if (family === "flatcar") throw new FmcError("DNS_ENGINE", `${host.name}: bind9 cannot be installed on Flatcar`, "put the DNS (the identity host) on a Debian or AlmaLinux host");
  const layout = BIND_LAYOUTS[family];
  const out: Change[] = [];
  let pkg = packageChange(facts, FAMILIES[family], layout.packages, c);
  if (pkg && facts.units.get(NAMED)?.active !== "active" && selfResolving(host, facts)) {
    pkg = { ...pkg, commands: pkg.commands.map((cmd) => withBootstrapResolver(cmd, pc.render.spec.network.upstreamDns)) };
  }
  if (pkg) out.push(pkg);
  const mode = family === "rhel-like" ? 0o640 : 0o644;
  const files = [
    ...layout.config(pc.render).map((f) => ({ ...f, validate: "named-checkconf %s" })),
    ...zones(pc.render).map((z) => {
      const path = `${layout.zoneDir}/${z.name}.zone`;
      return { path, content: zoneFor(z.render, facts.files.get(path)?.content, now).content, validate: `named-checkzone ${quote(z.name)} %s` };
    }),
  ];
  let changed = false;
  for (const f of files) {
    const ch = fileChange(facts, { ...f, mode, group: layout.group }, c);
    if (!ch) continue;
    changed = true;
    out.push(markingReload(ch, NAMED));
  }
  const svc = serviceChange(facts, { unit: NAMED, enabled: true, running: true, reload: changed, pending: reloadPending(facts, NAMED), installing: !!pkg }, c);
  if (svc) out.push(svc);
  return out;
}

function planFreeipa(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
  const { render } = pc;
  const c = { host: host.name, phase: "dns", mask: pc.mask };
  if (facts.os.family !== "rhel-like") {
    throw new FmcError("DNS_ENGINE", `${host.name}: FreeIPA needs AlmaLinux (or another RHEL-like OS); this host runs ${facts.os.id}`, "set dns.engine: bind9, or put the identity host on AlmaLinux");
  }
  const out: Change[] = [];
  const push = (ch: Change | undefined) => {
    if (ch) out.push(ch);
    return !!ch;
  };
  // the FQDN on the real address: ipa-server-install aborts on a loopback one
  push(fileChange(facts, { path: "/etc/hosts", content: etcHosts(render, host) }, c));
  for (const name of IPA_SECRETS) {
    push(fileChange(facts, { path: `${IPA_SECRET_DIR}/${name}`, content: `${render.secrets.get(name)}\n`, mode: 0o600, secret: true }, c));
  }
  push(fileChange(facts, { path: IPA_SERVER_SCRIPT, content: ipaServerInstall(render), mode: 0o700, validate: "bash -n %s" }, c));
  const records = push(fileChange(facts, { path: IPA_RECORDS_SCRIPT, content: ipaRecords(render), mode: 0o700, validate: "bash -n %s" }, c));
  const install = guardedChange(
    facts,
    {
      id: IPA_INSTALLED_GUARD,
      title: "install the FreeIPA server with integrated DNS (ipa-server-install)",
      unless: "ipactl status",
      run: `bash ${quote(IPA_SERVER_SCRIPT)}`,
      notes: [`ipa-server-install takes 10-20 minutes: run apply with --timeout 1800`, `${host.name} becomes the domain's DNS, Kerberos KDC, LDAP server and CA`],
    },
    c,
  );
  push(install);
  // the record script is idempotent: it runs after an install, when it changed, or when it never finished
  if (install || records || facts.guards.get(IPA_RECORDS_GUARD) !== 0) {
    out.push({
      host: host.name,
      phase: "dns",
      title: "create the zones' records and the clients' one-time passwords in FreeIPA",
      commands: [script(`bash ${quote(IPA_RECORDS_SCRIPT)} && install -D -m 0600 ${quote(IPA_RECORDS_SCRIPT)} ${quote(IPA_RECORDS_APPLIED)}`, `bash ${IPA_RECORDS_SCRIPT}`)],
      notes: [],
    });
  }
  return out;
}

/** The dns phase; `now` dates new zone serials (tests pass their own clock). */
export function dnsPhase(now: () => Date = () => new Date()): Phase {
  return {
    name: "dns",
    description: "internal DNS on the identity host: bind9 or FreeIPA, forward and reverse zones",
    hosts: (pc) => (pc.render.topo.dnsHost ? [pc.render.topo.dnsHost] : []),
    facts(pc) {
      const files = new Set<string>([RESOLV_CONF, ...pendingFacts(NAMED).files]);
      for (const layout of Object.values(BIND_LAYOUTS)) {
        for (const f of layout.config(pc.render)) files.add(f.path);
        for (const z of zones(pc.render)) files.add(`${layout.zoneDir}/${z.name}.zone`);
      }
      const ipa = pc.render.spec.dns.engine === "freeipa";
      if (ipa) for (const f of ["/etc/hosts", IPA_SERVER_SCRIPT, IPA_RECORDS_SCRIPT, ...IPA_SECRETS.map((s) => `${IPA_SECRET_DIR}/${s}`)]) files.add(f);
      return {
        files,
        units: new Set([NAMED]),
        packages: new Set(Object.values(BIND_LAYOUTS).flatMap((l) => l.packages)),
        guards: new Map(ipa ? [[IPA_INSTALLED_GUARD, "ipactl status"], [IPA_RECORDS_GUARD, `cmp -s ${quote(IPA_RECORDS_SCRIPT)} ${quote(IPA_RECORDS_APPLIED)}`]] : []),
      };
    },
    plan(pc, host, facts) {
      return pc.render.spec.dns.engine === "bind9" ? planBind9(pc, host, facts, now()) : planFreeipa(pc, host, facts);
    },
  };
}

export const dns: Phase = dnsPhase();
