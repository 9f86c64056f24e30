// Internal DNS: the forward and reverse zones (bind9 syntax, importable into FreeIPA), the
// bind9 configuration for `dns.engine: bind9`, and for `dns.engine: freeipa` the FreeIPA
// server install, record and client enrollment scripts for the AlmaLinux hosts.
//
// Zone serials only go up: a zone keeps the serial it has on the host while its records are
// unchanged, and a change takes max(current + 1, YYYYMMDD00 of today, UTC) (nextSerial).
// Offline renders use YYYYMMDD00 of today (or of SOURCE_DATE_EPOCH, for reproducible builds).
//
// Secrets never appear here: the FreeIPA passwords are files that `fmc apply` places with
// mode 0600, read by the installers in-process (not passed in argv); clients enroll with a
// one-time host password, never the admin password.
import type { Artifact, ClusterContext } from "./types.js";
import type { Host } from "../model/schema.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { cidrOf, contains, ipOf, reverseLabel } from "../model/net.js";
import { configWord, sh, zoneName } from "./quote.js";
import { FmcError } from "../errors.js";

export interface DnsRecord {
  readonly name: string;
  readonly type: "A" | "CNAME";
  /** An address, or for a CNAME the target's name in the zone. */
  readonly value: string;
}

/**
 * Every host and VIP by name, then aliases: `ingress` and the service names point at the
 * API VIP (by CNAME, so that only the VIP's own name has its address and its PTR), `ipa`,
 * `postgres` and `nfs` at their hosts. A name is taken once, first come first served.
 */
export function dnsRecords(ctx: ClusterContext): DnsRecord[] {
  const { spec } = ctx;
  const recs: DnsRecord[] = spec.hosts.map((h) => ({ name: h.name, type: "A", value: h.address }));
  for (const v of spec.vips) recs.push({ name: v.name, type: "A", value: v.address });
  if (spec.vips.some((v) => v.name === spec.k3s.apiVip)) {
    const vip = spec.k3s.apiVip;
    recs.push({ name: "ingress", type: "CNAME", value: vip });
    recs.push({ name: "api", type: "CNAME", value: vip });
    for (const svc of ["grafana", "prometheus", "kibana"] as const) {
      if (spec.services[svc].enabled) recs.push({ name: svc, type: "CNAME", value: vip });
    }
  }
  if (spec.identity) recs.push({ name: "ipa", type: "CNAME", value: spec.identity.host });
  if (spec.database) recs.push({ name: "postgres", type: "CNAME", value: spec.database.host });
  if (spec.storage) recs.push({ name: "nfs", type: "CNAME", value: spec.storage.host });
  const taken = new Set<string>();
  return recs.filter((r) => !taken.has(r.name) && taken.add(r.name) && !(r.type === "CNAME" && r.value === r.name));
}

export interface PtrRecord {
  /** The owner name relative to the reverse zone, e.g. "10.5" for 10.17.5.10 in 17.10.in-addr.arpa. */
  readonly label: string;
  readonly address: string;
  /** Absolute name with the final dot. */
  readonly target: string;
}

/** One PTR per address inside network.cidr: hosts first, then VIPs; an address is named once. */
export function ptrRecords(ctx: ClusterContext): PtrRecord[] {
  const { spec, topo } = ctx;
  const net = cidrOf(spec.network.cidr);
  const prefix = zonePrefix(ctx);
  const seen = new Set<string>();
  const out: PtrRecord[] = [];
  for (const [name, address] of [...spec.hosts.map((h) => [h.name, h.address] as const), ...spec.vips.map((v) => [v.name, v.address] as const)]) {
    if (seen.has(address) || !contains(net, ipOf(address))) continue;
    seen.add(address);
    out.push({ label: reverseLabel(ipOf(address), prefix), address, target: `${topo.fqdn(name)}.` });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Serials

const MAX_SERIAL = 0xffffffff;

/** YYYYMMDD00 of a date, in UTC. */
export function dateSerial(now: Date): number {
  return (now.getUTCFullYear() * 10000 + (now.getUTCMonth() + 1) * 100 + now.getUTCDate()) * 100;
}

/**
 * The serial a zone gets: the current one while the records are unchanged, otherwise
 * max(current + 1, YYYYMMDD00 of today), so it increases also when the current serial is
 * ahead of the date (several changes a day, or a clock that was wrong once).
 */
export function nextSerial(current: number | undefined, changed: boolean, now: Date): number {
  if (current !== undefined && !changed) return current;
  const next = Math.max(current === undefined ? 0 : current + 1, dateSerial(now));
  if (next > MAX_SERIAL) throw new FmcError("DNS_SERIAL", `the zone serial ${current} cannot grow any further`, "reset the serial by hand following RFC 1982 (serial number arithmetic)");
  return next;
}

/** The serial in a zone file's SOA record, if it has one fmc can read. */
export function serialOf(zone: string): number | undefined {
  const m = /\sIN\s+SOA\s+\S+\s+\S+\s+\(\s*(\d{1,10})\s/.exec(zone);
  return m ? Number(m[1]) : undefined;
}

/**
 * The zone file a host should have, given the one it has: rendered with the current serial,
 * an unchanged zone is byte for byte the current file (nothing to do); a changed one gets
 * nextSerial.
 */
export function zoneFor(render: (serial: number) => string, current: string | undefined, now: Date): { content: string; serial: number; changed: boolean } {
  const serial = current === undefined ? undefined : serialOf(current);
  if (serial !== undefined && render(serial) === current) return { content: current, serial, changed: false };
  const next = nextSerial(serial, true, now);
  return { content: render(next), serial: next, changed: true };
}

/** The date of an offline render: SOURCE_DATE_EPOCH when set (reproducible builds), else now. */
function renderDate(): Date {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  return epoch && /^\d+$/.test(epoch) ? new Date(Number(epoch) * 1000) : new Date();
}

// ---------------------------------------------------------------------------------------
// Zones

function nameServer(ctx: ClusterContext): string {
  const ns = ctx.topo.dnsHost;
  return ns ? `${ctx.topo.fqdn(ns.name)}.` : `ns.${ctx.spec.domain}.`;
}

function soa(ctx: ClusterContext, origin: string, serial: number, body: string[]): string {
  const ns = nameServer(ctx);
  return lines(
    `; ${HEADER_TEXT}`,
    `$ORIGIN ${zoneName(`${origin}.`)}`,
    "$TTL 300",
    `@ IN SOA ${zoneName(ns)} ${zoneName(`hostmaster.${ctx.spec.domain}.`)} ( ${serial} 3600 900 604800 300 )`,
    `@ IN NS ${zoneName(ns)}`,
    ...body,
  );
}

export function forwardZone(ctx: ClusterContext, serial = dateSerial(renderDate())): string {
  const body = dnsRecords(ctx).map((r) => `${zoneName(r.name).padEnd(16)} IN ${r.type.padEnd(5)} ${r.type === "A" ? configWord("a zone file", r.value) : zoneName(r.value)}`);
  return soa(ctx, ctx.spec.domain, serial, body);
}

/** Whole octets of network.cidr (at least one): the reverse zone covers them. */
function zonePrefix(ctx: ClusterContext): number {
  return Math.max(8, Math.floor(cidrOf(ctx.spec.network.cidr).prefix / 8) * 8);
}

export function reverseZoneName(ctx: ClusterContext): string {
  const ip = cidrOf(ctx.spec.network.cidr).network;
  const parts = [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255].slice(0, zonePrefix(ctx) / 8);
  return `${parts.reverse().join(".")}.in-addr.arpa`;
}

export function reverseZone(ctx: ClusterContext, serial = dateSerial(renderDate())): string {
  const body = ptrRecords(ctx).map((p) => `${zoneName(p.label).padEnd(10)} IN PTR ${zoneName(p.target)}`);
  return soa(ctx, reverseZoneName(ctx), serial, body);
}

/** The zones the DNS host serves, each with its renderer by serial. */
export function zones(ctx: ClusterContext): Array<{ name: string; render: (serial: number) => string }> {
  return [
    { name: ctx.spec.domain, render: (s) => forwardZone(ctx, s) },
    { name: reverseZoneName(ctx), render: (s) => reverseZone(ctx, s) },
  ];
}

// ---------------------------------------------------------------------------------------
// bind9

/** Where bind9 keeps its configuration and zones, per OS family. */
export interface BindLayout {
  readonly packages: readonly string[];
  readonly unit: string;
  /** The group named runs as: it must read the files. */
  readonly group: string;
  /** Config files fmc writes, with their content. */
  readonly config: (ctx: ClusterContext) => Array<{ path: string; content: string }>;
  readonly zoneDir: string;
}

const zoneFile = (dir: string, zone: string) => `${dir}/${zone}.zone`;
const q = (name: string) => `"${zoneName(name)}"`;

function bindOptions(ctx: ClusterContext, dir: string, extra: readonly string[] = []): string[] {
  const { spec, topo } = ctx;
  const host = topo.dnsHost!;
  const addr = (a: string) => `${configWord("named.conf", a)};`;
  return [
    `acl "fmc-private" { ${addr(spec.network.cidr)} };`,
    "",
    "options {",
    `\tdirectory "${dir}";`,
    `\tlisten-on port 53 { 127.0.0.1; ${addr(host.address)} };`,
    "\tlisten-on-v6 { none; };",
    "\t// the private network only: authoritative answers and recursion alike",
    "\tallow-query { localhost; fmc-private; };",
    "\tallow-recursion { localhost; fmc-private; };",
    "\tallow-transfer { none; };",
    "\trecursion yes;",
    `\tforwarders { ${spec.network.upstreamDns.map(addr).join(" ")} };`,
    "\tforward only;",
    "\tdnssec-validation auto;",
    ...extra.map((l) => `\t${l}`),
    "};",
  ];
}

function bindZones(ctx: ClusterContext, zoneDir: string): string[] {
  return zones(ctx).flatMap((z) => [`zone ${q(z.name)} {`, "\ttype primary;", `\tfile "${zoneFile(zoneDir, z.name)}";`, "\tallow-update { none; };", "};"]);
}

export const BIND_LAYOUTS: Record<"debian-like" | "rhel-like", BindLayout> = {
  // Debian's named.conf includes named.conf.options, named.conf.local and the default zones
  "debian-like": {
    packages: ["bind9"],
    unit: "named.service", // alias bind9.service
    group: "bind",
    zoneDir: "/var/lib/bind",
    config: (ctx) => [
      { path: "/etc/bind/named.conf.options", content: lines(HEADER("//"), bindOptions(ctx, "/var/cache/bind")) },
      { path: "/etc/bind/named.conf.local", content: lines(HEADER("//"), bindZones(ctx, "/var/lib/bind")) },
    ],
  },
  // AlmaLinux/RHEL: one /etc/named.conf, zones in /var/named (SELinux: named_zone_t)
  "rhel-like": {
    packages: ["bind", "bind-utils"],
    unit: "named.service",
    group: "named",
    zoneDir: "/var/named",
    config: (ctx) => [
      {
        path: "/etc/named.conf",
        content: lines(
          HEADER("//"),
          bindOptions(ctx, "/var/named", ['managed-keys-directory "/var/named/dynamic";', 'pid-file "/run/named/named.pid";', 'session-keyfile "/run/named/session.key";']),
          "",
          'include "/etc/named.rfc1912.zones";',
          "",
          bindZones(ctx, "/var/named"),
        ),
      },
    ],
  },
};

// ---------------------------------------------------------------------------------------
// /etc/hosts: the host's FQDN on its real address (cloud-init's manage_etc_hosts would put
// it on 127.0.0.1, and ipa-server-install aborts on that), plus the DNS host's name, so
// that enrolling and installing never depend on the internal DNS being up.

export function etcHosts(ctx: ClusterContext, host: Host): string {
  const { topo } = ctx;
  const entry = (h: Host) => `${configWord("/etc/hosts", h.address).padEnd(15)} ${zoneName(topo.fqdn(h.name))} ${zoneName(h.name)}`;
  const dnsHost = topo.dnsHost;
  return lines(
    HEADER("#"),
    "127.0.0.1       localhost localhost.localdomain",
    "::1             localhost localhost.localdomain ip6-localhost ip6-loopback",
    entry(host),
    dnsHost && dnsHost.name !== host.name ? entry(dnsHost) : undefined,
  );
}

// ---------------------------------------------------------------------------------------
// FreeIPA (dns.engine: freeipa). Order, on real hosts:
//   1. base phase: every host's resolver is the IPA host, which does not answer yet. Scripts
//      that download packages before IPA answers use the bootstrap resolvers
//      (network.upstreamDns) for that download only, then put the resolver back.
//   2. <ipa>-server-install.sh on the IPA host (fmc apply runs it while `ipactl status`
//      fails): packages, then ipa-server-install with integrated DNS forwarding to the
//      same upstream resolvers. From here on IPA answers for the domain.
//   3. <ipa>-records.sh on the IPA host: the rendered zones' records and PTRs, and a
//      one-time host password (`ipa host-add --random`) per AlmaLinux client, each in
//      /root/.fmc/otp/<fqdn> (0600) on the IPA host.
//   4. each client's OTP copied to the client's /root/.fmc/ipa-otp (0600), then
//      <host>-client-install.sh there. The IPA host's name is in the client's /etc/hosts,
//      so enrollment works before the client's resolver does.

export const IPA_SECRET_DIR = "/root/.fmc";
const IPA_OTP_DIR = `${IPA_SECRET_DIR}/otp`;
const IPA_CLIENT_OTP = `${IPA_SECRET_DIR}/ipa-otp`;
/** Where fmc apply keeps the scripts on the IPA host. */
export const IPA_SERVER_SCRIPT = `${IPA_SECRET_DIR}/ipa-server-install.sh`;
export const IPA_RECORDS_SCRIPT = `${IPA_SECRET_DIR}/ipa-records.sh`;

const realmOf = (ctx: ClusterContext) => ctx.spec.identity?.realm ?? ctx.spec.domain.toUpperCase();

/** Bash lines: use the bootstrap resolvers while the current ones cannot resolve the package mirrors. */
function bootstrapResolver(ctx: ClusterContext, probe: string): string[] {
  const upstream = ctx.spec.network.upstreamDns.map((d) => `nameserver ${configWord("resolv.conf", d)}`).join("\\n");
  return [
    "# Bootstrap resolver: until IPA's DNS answers, package downloads resolve through the",
    "# upstream resolvers (network.upstreamDns); the resolver is put back right after.",
    "restore_resolver() { if [ -f /etc/resolv.conf.fmc-bootstrap ]; then cat /etc/resolv.conf.fmc-bootstrap > /etc/resolv.conf && rm -f /etc/resolv.conf.fmc-bootstrap; fi; }",
    "trap restore_resolver EXIT",
    `if ! getent ahostsv4 ${sh(probe)} >/dev/null 2>&1; then`,
    "  cat /etc/resolv.conf > /etc/resolv.conf.fmc-bootstrap  # written back in place: it may be a link",
    `  printf '# fmc bootstrap resolver, until IPA answers\\n${upstream}\\n' > /etc/resolv.conf`,
    "fi",
  ];
}

/** The interpreter line of an IPA tool: its Python runs the installer in-process. */
const PYTHON_OF = (tool: string) => `PY=$(sed -n '1s/^#! *\\([^ ]*\\).*/\\1/p' "$(command -v ${tool})")`;

/** Checks a secret file is there and private before anything reads it. */
const requireSecretFile = (path: string, hint: string) =>
  `if [ ! -s ${sh(path)} ] || [ "$(stat -c %a ${sh(path)})" != 600 ]; then echo ${sh(`fmc: ${path} must exist with mode 0600: ${hint}`)} >&2; exit 2; fi`;

export function ipaServerInstall(ctx: ClusterContext): string {
  const { spec, topo } = ctx;
  const host = topo.host(spec.identity!.host);
  const fqdn = topo.fqdn(host.name);
  const args = [
    ["--realm", realmOf(ctx)],
    ["--domain", spec.domain],
    ["--hostname", fqdn],
    ["--ip-address", host.address],
    ["--setup-dns"],
    ...spec.network.upstreamDns.map((f) => ["--forwarder", f]),
    ["--forward-policy", "only"],
    ["--reverse-zone", `${reverseZoneName(ctx)}.`],
    ["--no-ntp"], // time sync is the base phase's (chrony with network.ntp)
  ];
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    `# FreeIPA server with integrated DNS on ${host.name}. Step 2 of the identity setup:`,
    `# 1. base phase, 2. this script, 3. ${host.name}-records.sh, 4. <host>-client-install.sh.`,
    `# Passwords come from ${IPA_SECRET_DIR}/ipa-directory-manager and ipa-admin (0600) and`,
    "# reach ipa-server-install in-process, never in a command line.",
    "set -euo pipefail",
    "umask 077",
    'if ipactl status >/dev/null 2>&1; then echo "FreeIPA already runs here"; exit 0; fi',
    requireSecretFile(`${IPA_SECRET_DIR}/ipa-directory-manager`, "fmc apply places it"),
    requireSecretFile(`${IPA_SECRET_DIR}/ipa-admin`, "fmc apply places it"),
    "# ipa-server-install aborts when the FQDN resolves to a loopback address",
    `if ! getent ahostsv4 ${sh(fqdn)} | awk '{print $1}' | grep -qxF ${sh(host.address)}; then`,
    `  echo ${sh(`fmc: ${fqdn} must resolve to ${host.address} (see /etc/hosts; cloud-init's manage_etc_hosts puts it on 127.0.0.1)`)} >&2`,
    "  exit 2",
    "fi",
    bootstrapResolver(ctx, "mirrors.almalinux.org"),
    "dnf install -y freeipa-server freeipa-server-dns",
    "restore_resolver  # ipa-server-install points the resolver at IPA itself",
    PYTHON_OF("ipa-server-install"),
    `"$PY" -I - \\`,
    ...args.map((a, i) => `  ${a.map(sh).join(" ")}${i < args.length - 1 ? " \\" : " <<'PY'"}`),
    "import sys",
    "from ipaserver.install.ipa_server_install import ServerInstall",
    "",
    "def secret(name):",
    `    with open("${IPA_SECRET_DIR}/" + name) as f:`,
    "        return f.read().strip()",
    "",
    'argv = ["ipa-server-install", "--unattended", *sys.argv[1:]]',
    'argv += ["--ds-password", secret("ipa-directory-manager"), "--admin-password", secret("ipa-admin")]',
    "sys.exit(ServerInstall.main(argv))",
    "PY",
  );
}

export function ipaRecords(ctx: ClusterContext): string {
  const { spec, topo } = ctx;
  const server = topo.host(spec.identity!.host);
  const zone = spec.domain;
  const rev = reverseZoneName(ctx);
  const clients = spec.hosts.filter((h) => h.os === "almalinux" && h.name !== server.name);
  const abs = (name: string) => `${topo.fqdn(name)}.`;
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    `# The rendered zones' records in FreeIPA's DNS, and one-time enrollment passwords for the`,
    `# AlmaLinux clients. Step 3, on ${server.name} after ${server.name}-server-install.sh.`,
    "# Every step is idempotent (an existing record is left alone) and a failure does not stop",
    "# the others: failures are listed at the end and the exit code is 1.",
    "set -uo pipefail",
    "umask 077",
    requireSecretFile(`${IPA_SECRET_DIR}/ipa-admin`, "fmc apply places it"),
    'KRB5CCNAME=$(mktemp /tmp/krb5cc_fmc.XXXXXX); export KRB5CCNAME',
    "trap 'kdestroy -q 2>/dev/null; rm -f \"$KRB5CCNAME\"' EXIT",
    `if ! kinit admin < ${sh(`${IPA_SECRET_DIR}/ipa-admin`)} >/dev/null; then echo "fmc: kinit admin failed" >&2; exit 1; fi`,
    "failed=()",
    "# record ZONE NAME TYPE VALUE: adds the record unless that exact record exists",
    "record() {",
    '  if ipa dnsrecord-show "$1" "$2" --raw 2>/dev/null | sed "s/^ *//" | grep -qixF "$3record: $4"; then return 0; fi',
    '  if ipa dnsrecord-add "$1" "$2" "--$3-rec=$4" >/dev/null; then echo "added $2.$1 $3 $4"; else failed+=("$2.$1 $3 $4"); fi',
    "}",
    "# otp FQDN: a one-time password for a host that is not enrolled yet, kept for the hand-over",
    "otp() {",
    `  local file=${sh(IPA_OTP_DIR)}/$1 out`,
    '  if ipa host-show "$1" 2>/dev/null | grep -q "Keytab: True"; then return 0; fi  # enrolled',
    '  if [ -s "$file" ]; then return 0; fi  # waiting to be handed over',
    '  local verb=host-add',
    '  if ipa host-show "$1" >/dev/null 2>&1; then verb=host-mod; fi  # known but not enrolled: a new password',
    '  if ! out=$(ipa "$verb" "$1" --random); then failed+=("one-time password of $1"); return; fi',
    '  sed -n "s/^ *Random password: //p" <<<"$out" > "$file"',
    '  if [ -s "$file" ]; then echo "one-time password of $1 in $file"; else rm -f "$file"; failed+=("one-time password of $1"); fi',
    "}",
    `ipa dnszone-show ${sh(`${rev}.`)} >/dev/null 2>&1 || ipa dnszone-add ${sh(`${rev}.`)} >/dev/null || failed+=(${sh(`zone ${rev}`)})`,
    ...dnsRecords(ctx).map((r) => `record ${sh(`${zone}.`)} ${sh(r.name)} ${r.type === "A" ? `a ${sh(r.value)}` : `cname ${sh(abs(r.value))}`}`),
    ...ptrRecords(ctx).map((p) => `record ${sh(`${rev}.`)} ${sh(p.label)} ptr ${sh(p.target)}`),
    ...(clients.length ? [`mkdir -p -m 0700 ${sh(IPA_OTP_DIR)}`, ...clients.map((h) => `otp ${sh(topo.fqdn(h.name))}`)] : []),
    'if [ ${#failed[@]} -gt 0 ]; then printf "fmc: failed: %s\\n" "${failed[@]}" >&2; exit 1; fi',
    'echo "fmc: all records and one-time passwords are in place"',
  );
}

export function ipaClientInstall(ctx: ClusterContext, hostName: string): string {
  const { spec, topo } = ctx;
  const server = topo.host(spec.identity!.host);
  const sfqdn = topo.fqdn(server.name);
  const fqdn = topo.fqdn(hostName);
  const hostsLine = `${server.address} ${sfqdn} ${server.name}`;
  const args = [
    ["--mkhomedir"],
    ["--domain", spec.domain],
    ["--realm", realmOf(ctx)],
    ["--server", sfqdn],
    ["--fixed-primary"],
    ["--hostname", fqdn],
    ["--no-ntp"],
  ];
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    `# Enrolls ${hostName} in FreeIPA with a one-time host password (never the admin password).`,
    `# Step 4: after ${server.name}-records.sh made the password on ${server.name}, hand it over:`,
    `#   ssh root@${server.address} cat ${IPA_OTP_DIR}/${fqdn} | ssh root@${topo.host(hostName).address} 'umask 077; mkdir -p ${IPA_SECRET_DIR}; cat > ${IPA_CLIENT_OTP}'`,
    "# It reaches ipa-client-install in-process, never in a command line, and is gone after use.",
    "set -euo pipefail",
    "umask 077",
    'if [ -f /etc/ipa/default.conf ]; then echo "already enrolled"; rm -f ' + sh(IPA_CLIENT_OTP) + "; exit 0; fi",
    requireSecretFile(IPA_CLIENT_OTP, `copy it from ${server.name}:${IPA_OTP_DIR}/${fqdn}`),
    `# Enrollment must not depend on IPA's DNS: ${server.name}'s address comes from /etc/hosts`,
    `grep -qE ${sh(`^${server.address.replace(/\./g, "\\.")}[[:space:]]+${sfqdn.replace(/\./g, "\\.")}([[:space:]]|$)`)} /etc/hosts || echo ${sh(hostsLine)} >> /etc/hosts`,
    bootstrapResolver(ctx, "mirrors.almalinux.org"),
    "dnf install -y freeipa-client",
    "restore_resolver",
    PYTHON_OF("ipa-client-install"),
    `"$PY" -I - \\`,
    ...args.map((a, i) => `  ${a.map(sh).join(" ")}${i < args.length - 1 ? " \\" : " <<'PY'"}`),
    "import sys",
    "from ipaclient.install.ipa_client_install import ClientInstall",
    "",
    `with open("${IPA_CLIENT_OTP}") as f:`,
    "    otp = f.read().strip()",
    "# --password without --principal: a one-time host password (ipa host-add --random)",
    'sys.exit(ClientInstall.main(["ipa-client-install", "--unattended", *sys.argv[1:], "--password", otp]))',
    "PY",
    `rm -f ${sh(IPA_CLIENT_OTP)}  # spent: IPA accepts it once`,
  );
}

export function renderDns(ctx: ClusterContext): Artifact[] {
  const { spec, topo } = ctx;
  const dnsHost = topo.dnsHost;
  if (!dnsHost) return [];
  const out: Artifact[] = zones(ctx).map((z) => ({ path: `dns/${z.name}.zone`, content: z.render(dateSerial(renderDate())) }));
  if (spec.dns.engine === "bind9") {
    const family = dnsHost.os === "debian" ? "debian-like" : dnsHost.os === "almalinux" ? "rhel-like" : undefined;
    for (const f of family ? BIND_LAYOUTS[family].config(ctx) : []) out.push({ path: `dns/${dnsHost.name}${f.path}`, content: f.content });
  } else if (spec.identity) {
    const ipa = spec.identity.host;
    out.push({ path: `identity/${ipa}-server-install.sh`, content: ipaServerInstall(ctx), executable: true });
    out.push({ path: `identity/${ipa}-records.sh`, content: ipaRecords(ctx), executable: true });
    for (const h of spec.hosts) {
      if (h.os !== "almalinux" || h.name === ipa) continue;
      out.push({ path: `identity/${h.name}-client-install.sh`, content: ipaClientInstall(ctx, h.name), executable: true });
    }
  }
  return out;
}
