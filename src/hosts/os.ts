// What differs between OS families, behind one small interface: package commands,
// where the resolver and time sync are configured, the time service's name, the
// host firewall the OS turns on by default, where PostgreSQL lives, and where the VIP
// holders' HAProxy socket and Keepalived check go.
import { quote } from "../shell.js";
import { cmd, script, type Command } from "./command.js";
import type { OsFamilyName } from "./facts.js";
import type { NtpSources } from "../model/ntp.js";

export interface OsFamily {
  readonly name: OsFamilyName;
  /** Install packages; undefined where the OS has no package manager (Flatcar). */
  installPackages(names: readonly string[]): Command | undefined;
  readonly timeService: string;
  /** Path and content of the time sync configuration. */
  timeConfig(ntp: NtpSources): { path: string; content: string };
  /** Files that make the internal DNS the first resolver (Flatcar: none here; src/render/resolver.ts owns its drop-in). */
  resolverFiles?(dns: readonly string[], domain: string): Array<{ path: string; content: string }>;
  /** A host firewall the OS runs by default, which must let the roles' ports in. */
  readonly hostFirewall?: "firewalld";
  /** SELinux enforcing by default (the targeted policy): its booleans are planned from facts. */
  readonly selinux: boolean;
  /**
   * HAProxy's admin socket, in a directory the OS's haproxy package provides before the
   * daemon starts (`haproxy -c` does not bind it, so a wrong directory shows only at start).
   */
  readonly haproxySocket: string;
  /** Where Keepalived's check scripts go: a directory its OS lets keepalived run scripts from. */
  readonly keepalivedScriptDir: string;
}

const header = "# Managed by fmc: edit the cluster spec, not this file.\n";
const resolvConf = (dns: readonly string[], domain: string) =>
  `${header}${dns.map((d) => `nameserver ${d}`).join("\n")}\nsearch ${domain}\noptions timeout:2 attempts:2\n`;

// timesyncd takes pool names and servers alike in NTP=
const timesyncd = (ntp: NtpSources) => ({ path: "/etc/systemd/timesyncd.conf.d/fmc.conf", content: `${header}[Time]\nNTP=${[...ntp.pools, ...ntp.servers].join(" ")}\n` });

export const FAMILIES: Record<OsFamilyName, OsFamily> = {
  "debian-like": {
    name: "debian-like",
    installPackages: (names) => {
      // a fresh host may hold apt's lock (unattended-upgrades at boot) or have no package
      // lists yet (cloud images): wait for the lock, and update the lists once on failure;
      // an install stopped half-way (a timeout, a lost connection) is finished first
      const install = cmd("apt-get", "-o", "DPkg::Lock::Timeout=120", "install", "-y", "--no-install-recommends", ...names);
      const update = cmd("apt-get", "-o", "DPkg::Lock::Timeout=120", "update", "-q");
      return script(
        `export DEBIAN_FRONTEND=noninteractive; dpkg --configure -a >/dev/null 2>&1; ${install.shell} || { ${update.shell} && ${install.shell}; }`,
        `apt-get install -y --no-install-recommends ${names.join(" ")} (apt-get update and again if it fails)`,
      );
    },
    timeService: "systemd-timesyncd.service",
    timeConfig: timesyncd,
    resolverFiles: (dns, domain) => [{ path: "/etc/resolv.conf", content: resolvConf(dns, domain) }],
    selinux: false,
    // the package's tmpfiles.d creates /run/haproxy (its unit has no RuntimeDirectory)
    haproxySocket: "/run/haproxy/admin.sock",
    keepalivedScriptDir: "/etc/keepalived",
  },
  "rhel-like": {
    name: "rhel-like",
    installPackages: (names) => cmd("dnf", "install", "-y", ...names),
    timeService: "chronyd.service",
    // AlmaLinux images enable firewalld with only ssh, cockpit and dhcpv6-client open
    hostFirewall: "firewalld",
    timeConfig: (ntp) => ({ path: "/etc/chrony.conf", content: `${header}${[...ntp.pools.map((p) => `pool ${p} iburst`), ...ntp.servers.map((s) => `server ${s} iburst`)].join("\n")}\ndriftfile /var/lib/chrony/drift\nmakestep 1.0 3\nrtcsync\n` }),
    resolverFiles: (dns, domain) => [
      // NetworkManager would rewrite resolv.conf from DHCP otherwise
      { path: "/etc/NetworkManager/conf.d/90-fmc-dns.conf", content: `${header}[main]\ndns=none\n` },
      { path: "/etc/resolv.conf", content: resolvConf(dns, domain) },
    ],
    selinux: true,
    // nothing creates /run/haproxy here (haproxy.service has no RuntimeDirectory); the package
    // owns /var/lib/haproxy, labelled haproxy_var_lib_t, where haproxy_t may create sockets,
    // and its own config puts the socket there too
    haproxySocket: "/var/lib/haproxy/stats",
    // the policy labels /usr/libexec/keepalived keepalived_unconfined_script_exec_t: keepalived
    // runs scripts from there unconfined; from /etc/keepalived (etc_t) it may not run them at all
    keepalivedScriptDir: "/usr/libexec/keepalived",
  },
  flatcar: {
    name: "flatcar",
    installPackages: () => undefined,
    timeService: "systemd-timesyncd.service",
    timeConfig: timesyncd,
    // no resolverFiles: systemd-resolved's drop-in, the same for Ignition and base (src/render/resolver.ts)
    selinux: false,
    // Flatcar has no HAProxy or Keepalived package: Debian's layout
    haproxySocket: "/run/haproxy/admin.sock",
    keepalivedScriptDir: "/etc/keepalived",
  },
};

/**
 * Where PostgreSQL lives on each family. Debian: postgresql-common's clusters
 * (`postgresql-<v>`, unit `postgresql@<v>-main.service`, config in /etc/postgresql/<v>/main,
 * data wherever pg_createcluster put it). AlmaLinux: the PGDG packages (`postgresql<v>-server`,
 * unit `postgresql-<v>.service`, config beside the data in <dataDir>/<v>/data, PGDG's own
 * /var/lib/pgsql/<v>/data when dataDir is /var/lib/pgsql).
 */
export interface PostgresLayout {
  readonly version: string;
  /** The server package of this version. */
  readonly serverPackage: string;
  /** The NFS client (mount.nfs4). */
  readonly nfsClientPackage: string;
  /** The unit that runs the cluster. */
  readonly unit: string;
  /** PGDATA: below `root` (the data directory's mount point), never the mount point itself (lost+found). */
  readonly dataDir: string;
  /** Where postgresql.conf and pg_hba.conf are read from. */
  readonly configDir: string;
  /** The server's own programs (initdb, pg_dump, pg_restore, psql of this version). */
  readonly binDir: string;
  /**
   * initdb into `pgdata` (a shell word, quoted by the caller) as the postgres user, then the
   * whole filesystem flushed at once (syncfs): as durable as initdb's own fsync of every file,
   * which on NFS is a COMMIT round trip per file (≈ 15 s of a lab initdb, measured 2026-12-07).
   * Run as root.
   */
  readonly initdb: (pgdata: string) => string;
  /**
   * Makes an existing dataDir (PG_VERSION there, e.g. a rebuilt host mounting its old data)
   * a cluster again; undefined where the data directory holds its configuration itself.
   */
  readonly adoptCluster?: string;
  /** Debian only: stops its package from creating a cluster of its own on the local disk. */
  readonly noDefaultCluster?: { readonly path: string; readonly content: string };
}

/** The distribution's own PostgreSQL major version, by Debian release (what `apt-get install postgresql` gives). */
export const DEBIAN_POSTGRES: Readonly<Record<string, string>> = { "11": "11", "12": "15", "13": "17" };

export function postgresLayout(family: "debian-like" | "rhel-like", version: string, root: string): PostgresLayout {
  const initdb = "--locale=C.UTF-8 --encoding=UTF8 --data-checksums --auth-local=peer --auth-host=scram-sha-256";
  if (family === "debian-like") {
    const dataDir = `${root}/${version}/main`;
    return {
      version,
      serverPackage: `postgresql-${version}`,
      nfsClientPackage: "nfs-common",
      unit: `postgresql@${version}-main.service`,
      dataDir,
      configDir: `/etc/postgresql/${version}/main`,
      binDir: `/usr/lib/postgresql/${version}/bin`,
      initdb: (pgdata: string) => `runuser -u postgres -- /usr/lib/postgresql/${version}/bin/initdb --pgdata=${pgdata} ${initdb} --no-sync && sync -f ${pgdata}`,
      // pg_createcluster takes in a data directory only with its config files there: empty
      // ones do (it moves them to /etc and sets data_directory; fmc writes their content)
      adoptCluster: [
        `for f in postgresql.conf pg_hba.conf pg_ident.conf; do [ -e ${quote(dataDir)}/$f ] || install -o postgres -g postgres -m 0640 /dev/null ${quote(dataDir)}/$f; done`,
        `pg_createcluster --datadir=${quote(dataDir)} --start-conf=auto ${version} main`,
      ].join("\n"),
      noDefaultCluster: {
        path: "/etc/postgresql-common/createcluster.d/fmc.conf",
        content: `${header}# the data directory is created by fmc on its NFS mount, never by the package\ncreate_main_cluster = false\n`,
      },
    };
  }
  const dataDir = `${root}/${version}/data`;
  const binDir = `/usr/pgsql-${version}/bin`;
  return {
    version,
    serverPackage: `postgresql${version}-server`,
    nfsClientPackage: "nfs-utils",
    unit: `postgresql-${version}.service`,
    dataDir,
    configDir: dataDir,
    binDir,
    initdb: (pgdata: string) => `runuser -u postgres -- ${binDir}/initdb --pgdata=${pgdata} ${initdb} --no-sync && sync -f ${pgdata}`,
  };
}

/** PGDG's repository package for AlmaLinux/RHEL `major` (9), and the module that would shadow it. */
export function pgdgRepository(elMajor: string): Command {
  const rpm = `https://download.postgresql.org/pub/repos/yum/reporpms/EL-${elMajor}-$(uname -m)/pgdg-redhat-repo-latest.noarch.rpm`;
  return script(`dnf install -y "${rpm}" && { dnf -qy module disable postgresql || true; }`, `dnf install -y ${rpm.replace("$(uname -m)", "<arch>")} (the PGDG repository); dnf module disable postgresql`);
}
export const PGDG_REPO_PACKAGE = "pgdg-redhat-repo";


/** Where the K3s binary goes: Flatcar's /usr is read-only (get.k3s.io uses /opt/bin there too). */
export const k3sBinDir = (family: OsFamilyName): string => (family === "flatcar" ? "/opt/bin" : "/usr/local/bin");

/** The family the spec's `os` names: what `fmc render` writes for a host (plan and apply follow the host's facts). */
export function specFamily(os: "flatcar" | "almalinux" | "debian"): OsFamilyName {
  return os === "flatcar" ? "flatcar" : os === "debian" ? "debian-like" : "rhel-like";
}
