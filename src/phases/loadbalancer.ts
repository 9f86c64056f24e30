// loadbalancer: HAProxy and Keepalived from the foundation's renderers. Each config is
// checked by its daemon before it replaces the running one; services reload only then.
// On Debian the install starts HAProxy with the package's config: the config written
// after it reaches the daemon through reload-or-restart, whatever the install did.
// HAProxy reloads are seamless (master-worker, listeners handed over); Keepalived's
// check loop needs curl. The Keepalived part is shared with the edge phase.
import { haproxyConfig } from "../render/haproxy.js";
import { CHECK_SCRIPT, checkScript, KEEPALIVED_DROPIN, keepalivedConfig, keepalivedDropIn } from "../render/keepalived.js";
import { cmd } from "../hosts/command.js";
import { FAMILIES } from "../hosts/os.js";
import type { HostFacts } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { guardedChange, guardFacts, type GuardedSpec } from "../ops/guarded.js";
import { packageChange } from "../ops/package.js";
import { markingReload, pendingFacts, reloadPending, serviceChange } from "../ops/service.js";
import type { Change, OpContext } from "../ops/change.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

export const HAPROXY_CFG = "/etc/haproxy/haproxy.cfg";
const KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf";
/** What a VIP holder installs besides its proxy: curl runs Keepalived's health check. */
export const KEEPALIVED_PACKAGES = ["keepalived", "curl"] as const;


/** VIPs this host holds right now, from its interface addresses. */
function heldVips(pc: PhaseContext, facts: HostFacts): string[] {
  const addrs = new Set([...facts.addresses.values()].flat().map((a) => a.split("/")[0]));
  return pc.render.spec.vips.filter((v) => addrs.has(v.address)).map((v) => `${v.name} (${v.address})`);
}

/** Risk notes for touching a daemon on a host that holds a VIP now. */
export function vipRisk(pc: PhaseContext, host: Host, facts: HostFacts): (what: string) => string[] {
  const held = heldVips(pc, facts);
  return (what) => (held.length ? [`${what} on ${host.name} while it holds VIP ${held.join(", ")}`] : []);
}

/**
 * SELinux (enforcing on AlmaLinux) lets haproxy_t bind and connect only to ports labelled
 * for HTTP: 6443, 30080, 30443 and the metrics port need haproxy_connect_any.
 */
export const HAPROXY_SELINUX: GuardedSpec = {
  id: "selinux-haproxy-connect-any",
  title: "allow HAProxy to connect to any port (SELinux boolean haproxy_connect_any)",
  unless: "! command -v selinuxenabled || ! selinuxenabled || getsebool haproxy_connect_any | grep -q -- '--> on$'",
  run: "setsebool -P haproxy_connect_any 1",
  notes: ["without it SELinux blocks HAProxy's connections to the K3s API, the NodePorts and its own metrics port"],
};

/** The boolean, on rhel-like hosts whose facts show SELinux enabled and the boolean off. */
function haproxySelinuxChange(facts: HostFacts, c: OpContext): Change | undefined {
  return facts.os.family === "rhel-like" ? guardedChange(facts, HAPROXY_SELINUX, c) : undefined;
}

export const keepalivedFacts = () => ({
  files: new Set([KEEPALIVED_CONF, CHECK_SCRIPT, KEEPALIVED_DROPIN, ...pendingFacts("keepalived.service").files]),
  units: new Set(["keepalived.service"]),
});

/**
 * The check script, the restart drop-in, then keepalived.conf (checked by keepalived
 * --config-test); the service after them. The script is read at each run and Restart=
 * applies after daemon-reload: neither needs a reload of keepalived.
 */
export function keepalivedChanges(pc: PhaseContext, host: Host, facts: HostFacts, c: OpContext, installing: boolean): { files: Change[]; service: Change[] } {
  const files: Change[] = [];
  const script = fileChange(facts, { path: CHECK_SCRIPT, content: checkScript(), mode: 0o755 }, c);
  if (script) files.push(script);
  const dropIn = fileChange(facts, { path: KEEPALIVED_DROPIN, content: keepalivedDropIn() }, c);
  if (dropIn) files.push({ ...dropIn, commands: [...dropIn.commands, cmd("systemctl", "daemon-reload")] });
  const ka = fileChange(facts, { path: KEEPALIVED_CONF, content: keepalivedConfig(pc.render, host), mode: 0o600, validate: "keepalived --config-test -f %s" }, c);
  if (ka) files.push(markingReload(ka, "keepalived.service"));
  const s = serviceChange(facts, { unit: "keepalived.service", enabled: true, running: true, reload: !!ka, pending: reloadPending(facts, "keepalived.service"), installing, riskIfTouched: vipRisk(pc, host, facts)("reloads Keepalived") }, c);
  return { files, service: s ? [s] : [] };
}

/**
 * HAProxy and Keepalived installed, and on SELinux hosts allowed to connect anywhere: the
 * changes, and whether a package is installed in this run (its daemon may start with the
 * package's own config first).
 */
export function haproxyPackages(facts: HostFacts, c: OpContext): { changes: Change[]; installing: (name: string) => boolean } {
  const changes: Change[] = [];
  const pkg = packageChange(facts, FAMILIES[facts.os.family], ["haproxy", ...KEEPALIVED_PACKAGES], c);
  if (pkg) changes.push(pkg);
  const selinux = haproxySelinuxChange(facts, c);
  if (selinux) changes.push(selinux);
  return { changes, installing: (name) => !!pkg && !facts.packages.get(name) };
}

export const loadbalancer: Phase = {
  name: "loadbalancer",
  description: "HAProxy + Keepalived, checked before reload",
  hosts: (pc) => pc.render.topo.withRole("loadbalancer"),
  facts: () => ({
    files: new Set([HAPROXY_CFG, ...pendingFacts("haproxy.service").files, ...keepalivedFacts().files]),
    units: new Set(["haproxy.service", ...keepalivedFacts().units]),
    packages: new Set(["haproxy", ...KEEPALIVED_PACKAGES]),
    ...guardFacts(HAPROXY_SELINUX),
  }),
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const c = { host: host.name, phase: "loadbalancer", mask: pc.mask };
    const { changes: out, installing } = haproxyPackages(facts, c);
    const ha = fileChange(facts, { path: HAPROXY_CFG, content: haproxyConfig(pc.render, host), validate: "haproxy -c -q -f %s" }, c);
    if (ha) out.push(markingReload(ha, "haproxy.service"));
    const ka = keepalivedChanges(pc, host, facts, c, installing("keepalived"));
    out.push(...ka.files);
    const s = serviceChange(facts, { unit: "haproxy.service", enabled: true, running: true, reload: !!ha, pending: reloadPending(facts, "haproxy.service"), installing: installing("haproxy"), riskIfTouched: vipRisk(pc, host, facts)("reloads HAProxy") }, c);
    if (s) out.push(s);
    out.push(...ka.service);
    return out;
  },
};
