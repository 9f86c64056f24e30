// loadbalancer: HAProxy and Keepalived from the foundation's renderers. Each config is
// checked by its daemon before it replaces the running one; services reload only then.
// On Debian the install starts HAProxy with the package's config: the config written
// after it reaches the daemon through reload-or-restart, whatever the install did.
// HAProxy reloads are seamless (master-worker, listeners handed over); Keepalived's
// check loop needs curl. The Keepalived part is shared with the edge phase. Where the OS
// family differs (FAMILIES: HAProxy's admin socket, the check script's directory,
// SELinux), the host's facts decide, not the spec's `os`.
import { haproxyConfig } from "../render/haproxy.js";
import { checkScript, checkScriptPath, KEEPALIVED_DROPIN, keepalivedConfig, keepalivedDropIn } from "../render/keepalived.js";
import { cmd, script } from "../hosts/command.js";
import { quote } from "../shell.js";
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

/**
 * RHEL's policy lets keepalived_t connect to a few labelled ports only (http_port_t's 80,
 * 443, 8008, …; not 8405, unlabelled, nor 8082, us_cli_port_t), and keepalived_connect_any
 * is off by default (acassen/keepalived#1322). The check script runs unconfined from
 * /usr/libexec/keepalived; a copy without that label (bin_t, say) runs as keepalived_t,
 * and its curl then needs the boolean to reach the proxy.
 */
export const KEEPALIVED_SELINUX: GuardedSpec = {
  id: "selinux-keepalived-connect-any",
  title: "allow Keepalived to connect to any port (SELinux boolean keepalived_connect_any)",
  unless: "! command -v selinuxenabled || ! selinuxenabled || getsebool keepalived_connect_any | grep -q -- '--> on$'",
  run: "setsebool -P keepalived_connect_any 1",
  notes: ["without it SELinux may block Keepalived's check of the local proxy's health port, and no holder takes the VIP"],
};

/** A boolean, on families with SELinux whose facts show it enabled and the boolean off. */
function selinuxChange(facts: HostFacts, g: GuardedSpec, c: OpContext): Change | undefined {
  return FAMILIES[facts.os.family].selinux ? guardedChange(facts, g, c) : undefined;
}

/** The guards of several guarded specs in one fact request. */
export const guardsFacts = (...gs: GuardedSpec[]) => ({ guards: new Map(gs.flatMap((g) => [...guardFacts(g).guards])) });

// the facts are asked for before the family is known: every family's script path
const CHECK_SCRIPTS = [...new Set(Object.values(FAMILIES).map((f) => checkScriptPath(f.name)))];

export const keepalivedFacts = () => ({
  files: new Set([KEEPALIVED_CONF, ...CHECK_SCRIPTS, KEEPALIVED_DROPIN, ...pendingFacts("keepalived.service").files]),
  units: new Set(["keepalived.service"]),
});

/**
 * Gives a file written under SELinux the label the policy's file contexts name (the check
 * script's keepalived_unconfined_script_exec_t): a file takes its directory's label, which
 * is wrong where the directory was not made by the package.
 */
function relabelled(change: Change, path: string): Change {
  const p = quote(path);
  return { ...change, commands: [...change.commands, script(`if command -v selinuxenabled >/dev/null && selinuxenabled; then restorecon -F ${p}; fi`, `restorecon -F ${path} (where SELinux is enabled)`)] };
}

/**
 * The check script, the restart drop-in, then keepalived.conf (checked by keepalived
 * --config-test); the service after them. The script is read at each run and Restart=
 * applies after daemon-reload: neither needs a reload of keepalived.
 */
export function keepalivedChanges(pc: PhaseContext, host: Host, facts: HostFacts, c: OpContext, installing: boolean): { files: Change[]; service: Change[] } {
  const family = FAMILIES[facts.os.family];
  const files: Change[] = [];
  // before keepalived (re)starts with a config whose check needs it
  const selinux = selinuxChange(facts, KEEPALIVED_SELINUX, c);
  if (selinux) files.push(selinux);
  const scriptPath = checkScriptPath(family.name);
  const check = fileChange(facts, { path: scriptPath, content: checkScript(), mode: 0o755 }, c);
  if (check) files.push(family.selinux ? relabelled(check, scriptPath) : check);
  const dropIn = fileChange(facts, { path: KEEPALIVED_DROPIN, content: keepalivedDropIn() }, c);
  if (dropIn) files.push({ ...dropIn, commands: [...dropIn.commands, cmd("systemctl", "daemon-reload")] });
  const ka = fileChange(facts, { path: KEEPALIVED_CONF, content: keepalivedConfig(pc.render, host, family.name), mode: 0o600, validate: "keepalived --config-test -f %s" }, c);
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
  const selinux = selinuxChange(facts, HAPROXY_SELINUX, c);
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
    ...guardsFacts(HAPROXY_SELINUX, KEEPALIVED_SELINUX),
  }),
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const c = { host: host.name, phase: "loadbalancer", mask: pc.mask };
    const { changes: out, installing } = haproxyPackages(facts, c);
    const ha = fileChange(facts, { path: HAPROXY_CFG, content: haproxyConfig(pc.render, host, facts.os.family), validate: "haproxy -c -q -f %s" }, c);
    if (ha) out.push(markingReload(ha, "haproxy.service"));
    const ka = keepalivedChanges(pc, host, facts, c, installing("keepalived"));
    out.push(...ka.files);
    const s = serviceChange(facts, { unit: "haproxy.service", enabled: true, running: true, reload: !!ha, pending: reloadPending(facts, "haproxy.service"), installing: installing("haproxy"), riskIfTouched: vipRisk(pc, host, facts)("reloads HAProxy") }, c);
    if (s) out.push(s);
    out.push(...ka.service);
    return out;
  },
};
