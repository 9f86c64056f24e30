// Who writes a host's resolver, and what: one answer for the first boot (Ignition) and the
// base phase, so the phase never rewrites what the first boot wrote.
//
// Flatcar (systemd-resolved): the link (networkd file, Ignition) carries the internal DNS
// with the cluster domain, a routing domain: such names go to the link's servers only,
// never to the global ones (systemd-resolved.service(8), "Protocols and Routing"). The
// global servers set here are the upstream resolvers, so public names still resolve while
// the internal DNS is not up at first boot (the K3s download), and no internal name leaks.
//
// The FreeIPA host: ipa-server-install --setup-dns points the resolver at its own BIND
// (127.0.0.1) through NetworkManager's /etc/NetworkManager/conf.d/zzz-ipa.conf ([main]
// dns=default and [global-dns] searches/servers), or, where systemd-resolved runs,
// /etc/systemd/resolved.conf.d/zzz-ipa.conf (freeipa ipaplatform/base/paths.py,
// ipaplatform/redhat/tasks.py configure_dns_resolver, called by
// ipaserver/install/bindinstance.py setup_resolv_conf). NetworkManager reads conf.d files in
// name order, a later one overriding an earlier one's keys (NetworkManager.conf(5)), and IPA
// named its file zzz- to come last on purpose ("last man standing wins"): fmc's
// 90-fmc-dns.conf (dns=none) loses to it, NetworkManager rewrites resolv.conf, and fmc would
// rewrite it back on every run. IPA's own policy is what fmc wants on that host anyway (the
// internal DNS, itself, first; it forwards the rest upstream), so once IPA has written its
// file, the resolver is IPA's and fmc leaves it alone. Before that, fmc's files stand, so
// the host resolves while IPA is being installed.
import type { HostFacts } from "../hosts/facts.js";
import { unitFile } from "./systemd.js";
import { HEADER_TEXT } from "./types.js";

export const FLATCAR_RESOLVED_DROPIN = "/etc/systemd/resolved.conf.d/fmc.conf";

/** Flatcar's systemd-resolved drop-in: the upstream resolvers as the global ones, no compiled-in fallback (Google, Cloudflare). */
export function flatcarResolverFile(upstream: readonly string[]): { path: string; content: string } {
  return { path: FLATCAR_RESOLVED_DROPIN, content: unitFile({ Resolve: [["DNS", upstream.join(" ")], ["FallbackDNS", ""]] }, HEADER_TEXT) };
}

/** IPA's resolver files (freeipa ipaplatform/base/paths.py NETWORK_MANAGER_IPA_CONF, SYSTEMD_RESOLVED_IPA_CONF). */
export const IPA_RESOLVER_FILES = ["/etc/NetworkManager/conf.d/zzz-ipa.conf", "/etc/systemd/resolved.conf.d/zzz-ipa.conf"] as const;

/** The IPA file that makes the resolver IPA's on this host, if its installer wrote one. */
export function ipaResolverFile(facts: Pick<HostFacts, "files">): string | undefined {
  return IPA_RESOLVER_FILES.find((p) => facts.files.get(p) != null);
}
