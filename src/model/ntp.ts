// Which time servers a host uses. network.ntp defaults to the Flatcar pool, which is
// Flatcar's own; a spec that leaves it at that default gets, on AlmaLinux and Debian
// hosts, the pool each of those OSes ships in its own chrony.conf. A list the spec sets
// (any other value) is used on every host, whatever its OS.
import { SpecSchema, type OsFamily, type Spec } from "./schema.js";

/** The vendor pool each OS's packaged chrony.conf names (`pool 2.<os>.pool.ntp.org iburst`). */
const OS_NTP_POOL: Readonly<Record<Exclude<OsFamily, "flatcar">, string>> = {
  almalinux: "2.almalinux.pool.ntp.org",
  debian: "2.debian.pool.ntp.org",
};

/** network.ntp's default, read from the schema itself. */
const DEFAULT_NTP: readonly string[] = SpecSchema.shape.network.shape.ntp.parse(undefined);

const isDefault = (ntp: readonly string[]) => ntp.length === DEFAULT_NTP.length && ntp.every((s, i) => s === DEFAULT_NTP[i]);

export interface NtpSources {
  /** Pool names: the client keeps several of the addresses each one resolves to. */
  readonly pools: readonly string[];
  /** Single servers. */
  readonly servers: readonly string[];
}

/** A host's time sources: the spec's list, or (left at the Flatcar default) its OS's own pool. */
export function ntpSources(spec: Spec, os: OsFamily): NtpSources {
  if (os === "flatcar" || !isDefault(spec.network.ntp)) return { pools: [], servers: [...spec.network.ntp] };
  return { pools: [OS_NTP_POOL[os]], servers: [] };
}
