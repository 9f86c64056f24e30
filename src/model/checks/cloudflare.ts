// Public DNS at Cloudflare: records listed once, pointing at a gateway that exists, and
// the WireGuard endpoint's name resolvable to the gateway without Cloudflare's proxy.
import { parseIp } from "../net.js";
import type { Checker } from "./context.js";

/** A name's record inside a DNS zone, relative to it ("@" for the apex); undefined for an address or a name outside the zone. */
export function recordInZone(zone: string, name: string): string | undefined {
  if (parseIp(name) !== undefined) return undefined;
  if (name === zone) return "@";
  return name.endsWith(`.${zone}`) ? name.slice(0, -zone.length - 1) : undefined;
}

export function checkCloudflare(c: Checker): void {
  const { spec, err, warn } = c;
  if (spec.cloudflare && !spec.wireguard) warn("cloudflare", "Cloudflare records point at the gateway, but there is no wireguard section");
  const records = new Set<string>();
  spec.cloudflare?.records.forEach((r, i) => {
    if (records.has(r.name)) err(`cloudflare.records[${i}].name`, `record ${r.name} is listed twice`);
    records.add(r.name);
  });
  const endpoint = spec.wireguard?.endpoint;
  if (endpoint === undefined || parseIp(endpoint) !== undefined) return;
  const inZone = spec.cloudflare ? recordInZone(spec.cloudflare.zone, endpoint) : undefined;
  const listed = inZone === undefined ? -1 : spec.cloudflare!.records.findIndex((r) => r.name === inZone);
  if (inZone === undefined) {
    const why = spec.cloudflare ? `it is not in the Cloudflare zone ${spec.cloudflare.zone}` : "there is no cloudflare section";
    warn("wireguard.endpoint", `fmc creates no DNS record for ${endpoint} (${why}): it must resolve to the gateway's public address, unproxied`, "or use a name in cloudflare.zone, or the address itself");
  } else if (listed >= 0 && spec.cloudflare!.records[listed]!.proxied) {
    err(`cloudflare.records[${listed}].proxied`, `${endpoint} is wireguard.endpoint: a proxied record carries only HTTP(S), never WireGuard's UDP`, "set proxied: false, or leave the record out (fmc renders the endpoint's DNS-only record)");
  }
}
