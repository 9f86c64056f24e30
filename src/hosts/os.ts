// What differs between OS families, behind one small interface: package commands,
// where the resolver and time sync are configured, the time service's name, and the
// host firewall the OS turns on by default.
import { cmd, script, type Command } from "./command.js";
import type { OsFamilyName } from "./facts.js";

export interface OsFamily {
  readonly name: OsFamilyName;
  /** Install packages; undefined where the OS has no package manager (Flatcar). */
  installPackages(names: readonly string[]): Command | undefined;
  readonly timeService: string;
  /** Path and content of the time sync configuration. */
  timeConfig(ntp: readonly string[]): { path: string; content: string };
  /** Files that make the internal DNS the first resolver. */
  resolverFiles(dns: readonly string[], domain: string): Array<{ path: string; content: string }>;
  /** A host firewall the OS runs by default, which must let the roles' ports in. */
  readonly hostFirewall?: "firewalld";
}

const header = "# Managed by fmc: edit the cluster spec, not this file.\n";
const resolvConf = (dns: readonly string[], domain: string) =>
  `${header}${dns.map((d) => `nameserver ${d}`).join("\n")}\nsearch ${domain}\noptions timeout:2 attempts:2\n`;

const timesyncd = (ntp: readonly string[]) => ({ path: "/etc/systemd/timesyncd.conf.d/fmc.conf", content: `${header}[Time]\nNTP=${ntp.join(" ")}\n` });

export const FAMILIES: Record<OsFamilyName, OsFamily> = {
  "debian-like": {
    name: "debian-like",
    installPackages: (names) => {
      // a fresh host may hold apt's lock (unattended-upgrades at boot) or have no package
      // lists yet (cloud images): wait for the lock, and update the lists once on failure
      const install = cmd("apt-get", "-o", "DPkg::Lock::Timeout=120", "install", "-y", "--no-install-recommends", ...names);
      const update = cmd("apt-get", "-o", "DPkg::Lock::Timeout=120", "update", "-q");
      return script(
        `export DEBIAN_FRONTEND=noninteractive; ${install.shell} || { ${update.shell} && ${install.shell}; }`,
        `apt-get install -y --no-install-recommends ${names.join(" ")} (apt-get update and again if it fails)`,
      );
    },
    timeService: "systemd-timesyncd.service",
    timeConfig: timesyncd,
    resolverFiles: (dns, domain) => [{ path: "/etc/resolv.conf", content: resolvConf(dns, domain) }],
  },
  "rhel-like": {
    name: "rhel-like",
    installPackages: (names) => cmd("dnf", "install", "-y", ...names),
    timeService: "chronyd.service",
    // AlmaLinux images enable firewalld with only ssh, cockpit and dhcpv6-client open
    hostFirewall: "firewalld",
    timeConfig: (ntp) => ({ path: "/etc/chrony.conf", content: `${header}${ntp.map((s) => `server ${s} iburst`).join("\n")}\ndriftfile /var/lib/chrony/drift\nmakestep 1.0 3\nrtcsync\n` }),
    resolverFiles: (dns, domain) => [
      // NetworkManager would rewrite resolv.conf from DHCP otherwise
      { path: "/etc/NetworkManager/conf.d/90-fmc-dns.conf", content: `${header}[main]\ndns=none\n` },
      { path: "/etc/resolv.conf", content: resolvConf(dns, domain) },
    ],
  },
  flatcar: {
    name: "flatcar",
    installPackages: () => undefined,
    timeService: "systemd-timesyncd.service",
    timeConfig: timesyncd,
    resolverFiles: (dns, domain) => [{ path: "/etc/systemd/resolved.conf.d/fmc.conf", content: `${header}[Resolve]\nDNS=${dns.join(" ")}\nDomains=${domain}\n` }],
  },
};
