// base: hostname, the internal DNS as first resolver, sysctl, swap off, time sync and
// the login user's authorized keys (every key of the spec plus fmc's admin key, in
// fmc's own block; keys outside it are the operator's and stay).
import type { Host } from "../spec/schema.js";
import { FAMILIES } from "../hosts/os.js";
import type { HostFacts } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { hostnameChanges, swapOffChange } from "../ops/host.js";
import { packageChange } from "../ops/package.js";
import { markingReload, pendingFacts, reloadPending, serviceChange } from "../ops/service.js";
import { homeOf } from "../ops/user.js";
import { authorizedKeysChange } from "../ops/keys.js";
import { sysctlChanges } from "../ops/sysctl.js";
import { K3S_SYSCTL } from "../render/ignition.js";
import type { Change } from "../ops/change.js";
import type { Phase, PhaseContext } from "./phase.js";

export const SYSCTL_FILE = "/etc/sysctl.d/90-fmc.conf";

export function sysctlFor(host: Host): Record<string, string> {
  const out: Record<string, string> = {};
  const roles = new Set(host.roles);
  if (roles.has("k3s-server") || roles.has("k3s-agent")) {
    for (const line of K3S_SYSCTL) {
      const [k, v] = line.split("=").map((x) => x.trim());
      out[k!] = v!;
    }
  }
  if (roles.has("loadbalancer") || roles.has("edge")) out["net.ipv4.ip_nonlocal_bind"] = "1";
  if (roles.has("firewall") || roles.has("gateway")) out["net.ipv4.ip_forward"] = "1";
  return out;
}

const TIME_PACKAGE: Record<string, string | undefined> = { "debian-like": "systemd-timesyncd", "rhel-like": "chrony", flatcar: undefined };

const authorizedKeysPath = (user: string) => `${homeOf(user)}/.ssh/authorized_keys`;

export const base: Phase = {
  name: "base",
  description: "hostname, resolver, sysctl, swap, time sync, authorized keys",
  hosts: (pc) => pc.render.spec.hosts,
  facts(pc, host) {
    const user = pc.loginUser(host);
    const files = ["/etc/hostname", SYSCTL_FILE, authorizedKeysPath(user)];
    for (const f of Object.values(FAMILIES)) {
      files.push(f.timeConfig([]).path, ...f.resolverFiles([], "").map((r) => r.path));
    }
    return {
      files: new Set([...files, ...pendingFacts(...Object.values(FAMILIES).map((f) => f.timeService)).files]),
      units: new Set(Object.values(FAMILIES).map((f) => f.timeService)),
      packages: new Set(Object.values(TIME_PACKAGE).filter((p): p is string => !!p)),
      sysctl: new Set(Object.keys(sysctlFor(host))),
    };
  },
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const { spec, topo } = pc.render;
    const c = { host: host.name, phase: "base", mask: pc.mask };
    const family = FAMILIES[facts.os.family];
    const out: Change[] = [...hostnameChanges(facts, host.name, c)];
    if (topo.dnsServers.length) {
      for (const f of family.resolverFiles(topo.dnsServers, spec.domain)) {
        const ch = fileChange(facts, f, c);
        if (ch) out.push(ch);
      }
    }
    out.push(...sysctlChanges(facts, SYSCTL_FILE, sysctlFor(host), c));
    const swap = swapOffChange(facts, c);
    if (swap) out.push(swap);
    const pkg = TIME_PACKAGE[family.name];
    const install = pkg ? packageChange(facts, family, [pkg], c) : undefined;
    if (install) out.push(install);
    const time = fileChange(facts, family.timeConfig(spec.network.ntp), c);
    if (time) out.push(markingReload(time, family.timeService));
    // Time services skip containers by design (ConditionVirtualization), so only the
    // enabled state is managed; on real hosts enabling starts it at boot.
    const svc = serviceChange(facts, { unit: family.timeService, enabled: true, reload: !!time, pending: reloadPending(facts, family.timeService), reloadBy: "restart", installing: !!install }, c);
    if (svc) out.push(svc);
    // fmc's block of the login user's keys; the operator's own lines stay
    const user = pc.loginUser(host);
    const keys = authorizedKeysChange(facts, { user, path: authorizedKeysPath(user), keys: topo.keysOf(host), group: user === "root" ? "root" : user, keepOtherAdminKeys: spec.ssh.generatedKey }, c);
    if (keys) out.push(keys);
    return out;
  },
};
