// loadbalancer: HAProxy and Keepalived from the foundation's renderers. Each config is
// checked by its daemon before it replaces the running one; services reload only then.
// On Debian the install starts HAProxy with the package's config: the config written
// after it reaches the daemon through reload-or-restart, whatever the install did.
import { haproxyConfig } from "../render/haproxy.js";
import { keepalivedConfig } from "../render/keepalived.js";
import { FAMILIES } from "../hosts/os.js";
import type { HostFacts } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { packageChange } from "../ops/package.js";
import { markingReload, pendingFacts, reloadPending, serviceChange } from "../ops/service.js";
import type { Change } from "../ops/change.js";
import type { Host } from "../spec/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

export const HAPROXY_CFG = "/etc/haproxy/haproxy.cfg";
export const KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf";

/** VIPs this host holds right now, from its interface addresses. */
export function heldVips(pc: PhaseContext, facts: HostFacts): string[] {
  const addrs = new Set([...facts.addresses.values()].flat().map((a) => a.split("/")[0]));
  return pc.render.spec.vips.filter((v) => addrs.has(v.address)).map((v) => `${v.name} (${v.address})`);
}

export const loadbalancer: Phase = {
  name: "loadbalancer",
  description: "HAProxy + Keepalived, checked before reload",
  hosts: (pc) => pc.render.topo.withRole("loadbalancer"),
  facts: () => ({
    files: new Set([HAPROXY_CFG, KEEPALIVED_CONF, ...pendingFacts("haproxy.service", "keepalived.service").files]),
    units: new Set(["haproxy.service", "keepalived.service"]),
    packages: new Set(["haproxy", "keepalived"]),
  }),
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const c = { host: host.name, phase: "loadbalancer", mask: pc.mask };
    const out: Change[] = [];
    const pkg = packageChange(facts, FAMILIES[facts.os.family], ["haproxy", "keepalived"], c);
    if (pkg) out.push(pkg);
    const ha = fileChange(facts, { path: HAPROXY_CFG, content: haproxyConfig(pc.render, host), validate: "haproxy -c -q -f %s" }, c);
    const ka = fileChange(facts, { path: KEEPALIVED_CONF, content: keepalivedConfig(pc.render, host), mode: 0o600, validate: "keepalived --config-test -f %s", secret: true }, c);
    if (ha) out.push(markingReload(ha, "haproxy.service"));
    if (ka) out.push(markingReload(ka, "keepalived.service"));
    const held = heldVips(pc, facts);
    const risk = (what: string) => (held.length ? [`${what} on ${host.name} while it holds VIP ${held.join(", ")}`] : []);
    for (const [unit, pkgName, changed, label] of [["haproxy.service", "haproxy", !!ha, "reloads HAProxy"], ["keepalived.service", "keepalived", !!ka, "reloads Keepalived"]] as const) {
      const installing = !!pkg && !facts.packages.get(pkgName);
      const s = serviceChange(facts, { unit, enabled: true, running: true, reload: changed, pending: reloadPending(facts, unit), installing, riskIfTouched: risk(label) }, c);
      if (s) out.push(s);
    }
    return out;
  },
};
