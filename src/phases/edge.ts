// edge: the proxy on the edge nodes behind the edge VIP, and that VIP's Keepalived.
// edge.engine haproxy: the Debian/RHEL package, HTTP mode, the origin certificate as a
// 0600 bundle, checked with `haproxy -c` before a seamless reload. edge.engine traefik:
// the binary from edge.traefikBinary (uploaded from this machine or downloaded on the
// host), SHA-256 checked before it is installed, a systemd unit and the rendered
// config; restarted when any of them changes. Switching engines stops the other proxy.
// The origin certificate comes from the lead's state (PhaseContext.originCertificate).
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { stringify } from "yaml";
import { cmd, script } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import { FAMILIES } from "../hosts/os.js";
import { FmcError } from "../errors.js";
import type { Change, OpContext, ChangeSite, Masker } from "../ops/change.js";
import { fileChange } from "../ops/file.js";
import type { GuardedSpec } from "../ops/guarded.js";
import { packageChange } from "../ops/package.js";
import { markingReload, pendingFacts, reloadPending, serviceChange } from "../ops/service.js";
import { unitPath } from "../ops/unit.js";
import { certBundle, EDGE_PATHS, edgeHaproxyConfig, forwardersList, TRAEFIK_DYNAMIC, TRAEFIK_STATIC, traefikBinaryPath, traefikUnit } from "../render/edge.js";
import { traefikDynamic, traefikStatic } from "../render/traefik.js";
import { HEADER_TEXT } from "../render/types.js";
import { sh } from "../render/quote.js";
import type { Host } from "../model/schema.js";
import { guardsFacts, HAPROXY_CFG, HAPROXY_SELINUX, haproxyPackages, KEEPALIVED_PACKAGES, KEEPALIVED_SELINUX, keepalivedChanges, keepalivedFacts, vipRisk } from "./loadbalancer.js";
import type { Phase, PhaseContext } from "./phase.js";

const TRAEFIK_UNIT = "traefik.service";
/** The SHA-256 of the source (binary or archive) the installed Traefik came from. */
const TRAEFIK_SOURCE_MARK = "/var/lib/fmc/traefik.source";
/** sha256sum's line for the installed binary: a replaced binary is noticed. */
const TRAEFIK_SUM_MARK = "/var/lib/fmc/traefik.sha256";

const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g;
/** The origin key is not in the secret store: plans show a mask for it, on both sides of a diff. */
const maskKeys = (mask: Masker): Masker => (text) => mask(text).replace(PRIVATE_KEY, "<secret:origin-key>");

const CERT_HINT =
  "put the Cloudflare Origin CA certificate and its key at .fmc/tls/origin.pem and .fmc/tls/origin-key.pem (in the lab, fmc lab up issues one from the lab CA)";

/** The origin certificate, checked here: it parses, and the key belongs to it. */
function originCertificate(pc: PhaseContext): { cert: string; key: string } {
  const oc = pc.originCertificate;
  if (!oc) throw new FmcError("EDGE_CERT", "the edge proxies need the origin certificate for the public names, and there is none", CERT_HINT);
  let matches: boolean;
  try {
    matches = new X509Certificate(oc.cert).checkPrivateKey(createPrivateKey(oc.key));
  } catch (e) {
    throw new FmcError("EDGE_CERT", `the origin certificate or key is not a PEM certificate and private key: ${(e as Error).message}`, CERT_HINT);
  }
  if (!matches) throw new FmcError("EDGE_CERT", "the origin key does not belong to the origin certificate", CERT_HINT);
  return oc;
}

const traefikGuard = (sha256: string): GuardedSpec => ({
  id: "traefik-binary",
  title: "install the Traefik binary",
  unless: `grep -qx ${sh(sha256)} ${TRAEFIK_SOURCE_MARK} && sha256sum -c --status ${TRAEFIK_SUM_MARK}`,
  // the install is its own change (installTraefikCommand): the guard only says whether it is needed
  run: "false",
});

/** Installs `bin` from stdin or a download, refusing anything whose SHA-256 is not `sha256`. */
function installTraefikCommand(pc: PhaseContext, bin: string): Change["commands"][number] {
  const src = pc.render.spec.edge.traefikBinary!;
  const marks = [
    `mkdir -p ${sh(TRAEFIK_SOURCE_MARK.replace(/\/[^/]+$/, ""))}`,
    `echo ${sh(src.sha256)} > ${TRAEFIK_SOURCE_MARK}`,
    `sha256sum ${sh(bin)} > ${TRAEFIK_SUM_MARK}`,
  ];
  const verify = (file: string, what: string) =>
    `echo ${sh(`${src.sha256}  `)}"${file}" | sha256sum -c --status - || { echo ${sh(`fmc: ${what} does not have SHA-256 ${src.sha256}; nothing installed`)} >&2; exit 3; }`;
  const head = ["set -euo pipefail", 'work=$(mktemp -d)', `trap 'rm -rf "$work"' EXIT HUP INT TERM`];
  const place = [`mkdir -p "$(dirname ${sh(bin)})"`, `install -m 0755 "$src" ${sh(`${bin}.fmc-new`)}`, `mv -f ${sh(`${bin}.fmc-new`)} ${sh(bin)}`, ...marks];
  if (src.path !== undefined) {
    let data: Buffer;
    try {
      data = readFileSync(src.path);
    } catch (e) {
      throw new FmcError("EDGE_TRAEFIK_BINARY", `cannot read edge.traefikBinary.path ${src.path}: ${(e as Error).message}`, "put the traefik binary there or give edge.traefikBinary.url");
    }
    const got = createHash("sha256").update(data).digest("hex");
    if (got !== src.sha256) throw new FmcError("EDGE_TRAEFIK_BINARY", `${src.path} has SHA-256 ${got}, the spec says ${src.sha256}`, "check the file and edge.traefikBinary.sha256; a mismatch is never installed");
    const body = [...head, 'base64 -d > "$work/traefik"', verify("$work/traefik", "the uploaded binary"), 'src="$work/traefik"', ...place].join("\n");
    return script(body, `install ${bin} from ${src.path} (sha256 ${src.sha256.slice(0, 12)}…, checked on the host)`, { data: data.toString("base64") });
  }
  const body = [
    ...head,
    `curl -fsSL --proto '=https' --retry 3 -o "$work/download" ${sh(src.url!)}`,
    verify("$work/download", src.url!),
    // a release archive holds the binary as ./traefik; anything else is the binary itself
    'if tar -tzf "$work/download" traefik >/dev/null 2>&1; then tar -xzf "$work/download" -C "$work" traefik; src="$work/traefik"; else src="$work/download"; fi',
    ...place,
  ].join("\n");
  return script(body, `download ${src.url} and install it as ${bin} (sha256 ${src.sha256.slice(0, 12)}… checked first)`);
}

/** Stops and disables the engine not in use, if a previous run installed it. */
function stopOther(facts: HostFacts, unit: string, c: ChangeSite): Change[] {
  const u = facts.units.get(unit);
  if (!u || (u.enabled === "not-found" && u.active !== "active")) return [];
  const s = serviceChange(facts, { unit, enabled: false, running: false }, c);
  return s ? [{ ...s, notes: [...s.notes, `edge.engine is no longer ${unit.replace(".service", "")}`] }] : [];
}

function haproxyPlan(pc: PhaseContext, host: Host, facts: HostFacts, c: OpContext): Change[] {
  const oc = originCertificate(pc);
  const { changes: out, installing } = haproxyPackages(facts, c);
  // the files the config names first: its check loads them
  const files = [
    fileChange(facts, { path: EDGE_PATHS.forwarders, content: forwardersList(pc.render) }, c),
    fileChange(facts, { path: EDGE_PATHS.bundle, content: certBundle(oc.cert, oc.key), mode: 0o600, secret: true }, c),
    // the admin socket where the host's haproxy package provides its directory
    fileChange(facts, { path: HAPROXY_CFG, content: edgeHaproxyConfig(pc.render, host, EDGE_PATHS, facts.os.family), validate: "haproxy -c -q -f %s" }, c),
  ].filter((x): x is Change => !!x);
  out.push(...files.map((f) => markingReload(f, "haproxy.service")));
  const ka = keepalivedChanges(pc, host, facts, c, installing("keepalived"));
  out.push(...ka.files, ...stopOther(facts, TRAEFIK_UNIT, c));
  const s = serviceChange(facts, { unit: "haproxy.service", enabled: true, running: true, reload: files.length > 0, pending: reloadPending(facts, "haproxy.service"), installing: installing("haproxy"), riskIfTouched: vipRisk(pc, host, facts)("reloads HAProxy") }, c);
  if (s) out.push(s);
  out.push(...ka.service);
  return out;
}

function traefikPlan(pc: PhaseContext, host: Host, facts: HostFacts, c: OpContext): Change[] {
  const e = pc.render.spec.edge;
  if (!e.traefikBinary)
    throw new FmcError(
      "EDGE_TRAEFIK_BINARY",
      "edge.engine is traefik but edge.traefikBinary is not set: Traefik has no package to install",
      "set edge.traefikBinary.path (a binary on this machine) or edge.traefikBinary.url (a release archive), with its sha256; or use edge.engine: haproxy",
    );
  const oc = originCertificate(pc);
  const out: Change[] = [];
  const pkg = packageChange(facts, FAMILIES[facts.os.family], [...KEEPALIVED_PACKAGES], c);
  if (pkg) out.push(pkg);
  const bin = traefikBinaryPath(facts.os.family === "flatcar");
  const changed: Change[] = [];
  const guard = traefikGuard(e.traefikBinary.sha256);
  if (facts.guards.get(guard.id) !== 0) {
    changed.push({ host: c.host, phase: c.phase, title: `install Traefik ${e.traefikVersion} at ${bin}`, commands: [installTraefikCommand(pc, bin)], notes: [] });
  }
  const head = `# ${HEADER_TEXT}\n`;
  const files = [
    fileChange(facts, { path: TRAEFIK_STATIC, content: head + stringify(traefikStatic(pc.render)) }, c),
    fileChange(facts, { path: e.certFile, content: `${oc.cert.trim()}\n` }, c),
    fileChange(facts, { path: e.keyFile, content: `${oc.key.trim()}\n`, mode: 0o600, secret: true }, c),
  ].filter((x): x is Change => !!x);
  changed.push(...files);
  const unit = fileChange(facts, { path: unitPath(TRAEFIK_UNIT), content: traefikUnit(pc.render, bin) }, c);
  if (unit) changed.push({ ...unit, commands: [...unit.commands, cmd("systemctl", "daemon-reload")] });
  out.push(...changed.map((x) => markingReload(x, TRAEFIK_UNIT)));
  // Traefik watches its dynamic directory: a change there needs no restart
  const dynamic = fileChange(facts, { path: TRAEFIK_DYNAMIC, content: head + stringify(traefikDynamic(pc.render)) }, c);
  if (dynamic) out.push(dynamic);
  const ka = keepalivedChanges(pc, host, facts, c, !!pkg && !facts.packages.get("keepalived"));
  out.push(...ka.files, ...stopOther(facts, "haproxy.service", c));
  const s = serviceChange(facts, { unit: TRAEFIK_UNIT, enabled: true, running: true, reload: changed.length > 0, pending: reloadPending(facts, TRAEFIK_UNIT), reloadBy: "restart", riskIfTouched: vipRisk(pc, host, facts)("restarts Traefik") }, c);
  if (s) out.push(s);
  out.push(...ka.service);
  return out;
}

export const edge: Phase = {
  name: "edge",
  description: "the edge proxy (HAProxy or Traefik) and the edge VIP's Keepalived",
  hosts: (pc) => pc.render.topo.withRole("edge"),
  facts(pc) {
    const e = pc.render.spec.edge;
    const ka = keepalivedFacts();
    const common = { units: new Set(["haproxy.service", TRAEFIK_UNIT, ...ka.units]) };
    if (e.engine === "haproxy") {
      return {
        ...common,
        files: new Set([HAPROXY_CFG, EDGE_PATHS.bundle, EDGE_PATHS.forwarders, ...pendingFacts("haproxy.service").files, ...ka.files]),
        packages: new Set(["haproxy", ...KEEPALIVED_PACKAGES]),
        ...guardsFacts(HAPROXY_SELINUX, KEEPALIVED_SELINUX),
      };
    }
    return {
      ...common,
      files: new Set([TRAEFIK_STATIC, TRAEFIK_DYNAMIC, e.certFile, e.keyFile, unitPath(TRAEFIK_UNIT), ...pendingFacts(TRAEFIK_UNIT).files, ...ka.files]),
      packages: new Set(KEEPALIVED_PACKAGES),
      ...guardsFacts(KEEPALIVED_SELINUX, ...(e.traefikBinary ? [traefikGuard(e.traefikBinary.sha256)] : [])),
    };
  },
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    if (host.roles.includes("loadbalancer"))
      throw new FmcError("EDGE_ROLE", `${host.name} has the roles edge and loadbalancer: both need their own HAProxy and Keepalived configs`, "give the edge proxies and the load balancers separate hosts");
    const c = { host: host.name, phase: "edge", mask: maskKeys(pc.mask) };
    return pc.render.spec.edge.engine === "haproxy" ? haproxyPlan(pc, host, facts, c) : traefikPlan(pc, host, facts, c);
  },
};
