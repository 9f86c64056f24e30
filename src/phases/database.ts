// database: PostgreSQL on database.host with its data on the storage host's NFS export.
// The export is a hard NFS 4.2 mount (a systemd mount unit) at database.dataDir; the data
// directory is below it; PostgreSQL's unit needs, follows and is bound to the mount and
// refuses to start when it is missing, so the cluster is never created or started on the
// local disk. The cluster is created only on the mount and only when its directory is
// empty. Debian: postgresql-common's cluster <v>/main (the installed version; the
// package's own default cluster is turned off before it is installed). AlmaLinux: PGDG's
// postgresql<v>-server. Then fmc's part of postgresql.conf, pg_hba.conf, the service, and
// the spec's roles and databases (passwords sent as SCRAM verifiers on stdin).
//
// What is planned comes from facts: the live mounts, the units, the installed packages,
// the cluster's files and a guard that asks the running server whether its roles match.
// While the data directory is not mounted nothing that lives on it is planned: the plan
// says PostgreSQL waits for its mount, and apply re-plans once the mount is up.
import { cmd, script, slow, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { FactRequest, HostFacts } from "../hosts/facts.js";
import { DEBIAN_POSTGRES, FAMILIES, PGDG_REPO_PACKAGE, pgdgRepository, type PostgresLayout } from "../hosts/os.js";
import type { Change, OpContext } from "../ops/change.js";
import { fileChange } from "../ops/file.js";
import { packageChange } from "../ops/package.js";
import { markingReload, pendingMarker, reloadPending, serviceChange } from "../ops/service.js";
import { unitPath } from "../ops/unit.js";
import {
  POSTGRES_PORT,
  POSTGRES_SOCKET_DIR,
  dataMountUnit,
  databaseMountUnit,
  dropInPath,
  layoutFor,
  maskVerifiers,
  nfsSource,
  pgHba,
  postgresConf,
  postgresDropIn,
  rolesCheckSql,
  rolesSql,
} from "../render/database.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";
import { FmcError } from "../errors.js";

const PHASE = "database";
/** Major versions whose packages, units and files are read as facts (plus the spec's). */
const KNOWN_VERSIONS = ["13", "14", "15", "16", "17", "18"];
export const ROLES_CHECK = "/etc/fmc/postgresql/roles-check.sql";
export const NFS_CLIENT_GUARD = "database:nfs-client";
export const ROLES_GUARD = "database:roles";
const aptGuard = (v: string) => `database:apt-postgresql-${v}`;
/** Seconds apply waits for the NFS mount before it reports the server or export as the cause. */
const MOUNT_WAIT_S = 90;

type Family = "debian-like" | "rhel-like";

const versions = (pc: PhaseContext) => [...new Set([pc.render.spec.database!.postgresVersion, ...KNOWN_VERSIONS])];

/** The guard's psql: Debian's pg_wrapper or PGDG's alternatives link, else the newest PGDG one. */
const PSQL = 'P=$(command -v psql || ls -d /usr/pgsql-*/bin/psql 2>/dev/null | sort -V | tail -n 1)';

export function databaseFacts(pc: PhaseContext): Partial<FactRequest> {
  const ctx = pc.render;
  const mount = dataMountUnit(ctx);
  const files = new Set<string>([unitPath(mount), pendingMarker(mount), ROLES_CHECK]);
  const units = new Set<string>([mount]);
  const packages = new Set<string>(["nfs-common", "nfs-utils", PGDG_REPO_PACKAGE]);
  for (const family of ["debian-like", "rhel-like"] as const) {
    for (const v of versions(pc)) {
      const l = layoutFor(ctx, family, v);
      for (const f of [dropInPath(l), `${l.configDir}/postgresql.conf`, `${l.configDir}/pg_hba.conf`, `${l.configDir}/conf.d/fmc.conf`, `${l.dataDir}/PG_VERSION`, pendingMarker(l.unit)]) files.add(f);
      if (l.noDefaultCluster) files.add(l.noDefaultCluster.path);
      units.add(l.unit);
      packages.add(l.serverPackage);
    }
  }
  const v = ctx.spec.database!.postgresVersion;
  return {
    files,
    units,
    packages,
    guards: new Map([
      // NFSv4 in the running kernel, or as a module it can load (containers have neither)
      [NFS_CLIENT_GUARD, `grep -qw nfs4 /proc/filesystems || modprobe -n -q nfsv4 || [ -n "$(find /lib/modules/$(uname -r) -name 'nfsv4.ko*' -print -quit 2>/dev/null)" ]`],
      [ROLES_GUARD, `cd / && ${PSQL} && timeout -s KILL 15 runuser -u postgres -- "$P" -X -A -t -q -h ${POSTGRES_SOCKET_DIR} -p ${POSTGRES_PORT} -d postgres < ${quote(ROLES_CHECK)} | grep -qx t`],
      [aptGuard(v), `apt-cache show --no-all-versions postgresql-${v} 2>/dev/null | grep -q '^Version:'`],
    ]),
    storage: true,
  };
}

export interface PostgresOnHost {
  readonly family: Family;
  readonly layout: PostgresLayout;
  /** The server package is installed. */
  readonly installed: boolean;
  /** Packages to install to get it (empty when installed). */
  readonly install: readonly string[];
  /** Why the version differs from the spec's, when it does. */
  readonly note?: string;
}

/**
 * Which PostgreSQL this host has or gets. AlmaLinux: the spec's version from PGDG.
 * Debian: the version installed (the spec's if several are), else the spec's if apt
 * knows it (PGDG's apt repository), else the release's own (bookworm: 15).
 */
export function postgresOnHost(pc: PhaseContext, host: Host, facts: HostFacts): PostgresOnHost {
  const spec = pc.render.spec.database!.postgresVersion;
  const family = facts.os.family;
  if (family === "flatcar") throw new FmcError("DATABASE_OS", `${host.name}: PostgreSQL cannot be installed on Flatcar`, "put the database host on AlmaLinux or Debian");
  const at = (v: string) => layoutFor(pc.render, family, v);
  if (family === "rhel-like") {
    const l = at(spec);
    const installed = !!facts.packages.get(l.serverPackage);
    return { family, layout: l, installed, install: installed ? [] : [l.serverPackage] };
  }
  const installed = versions(pc).filter((v) => facts.packages.get(`postgresql-${v}`));
  if (installed.includes(spec)) return { family, layout: at(spec), installed: true, install: [] };
  if (installed.length) {
    const v = installed.sort((a, b) => Number(b) - Number(a))[0]!;
    return { family, layout: at(v), installed: true, install: [], note: `database.postgresVersion is ${spec}; ${host.name} has PostgreSQL ${v} installed, which is used` };
  }
  if (facts.guards.get(aptGuard(spec)) === 0) return { family, layout: at(spec), installed: false, install: [`postgresql-${spec}`] };
  const own = DEBIAN_POSTGRES[facts.os.versionId.split(".")[0] ?? ""];
  const note = `apt on ${host.name} has no postgresql-${spec} (add PGDG's apt repository for it): installing ${own ? `PostgreSQL ${own}, ` : ""}the release's own version`;
  return own ? { family, layout: at(own), installed: false, install: [`postgresql-${own}`], note } : { family, layout: at(spec), installed: false, install: ["postgresql"], note };
}

/** A step that cannot be done: planned so the plan says why, and failing in apply with the same words. */
function blocked(c: OpContext, title: string, why: string, hint: string): Change {
  return { host: c.host, phase: c.phase, title, commands: [script(`echo ${quote(`fmc: ${why}; ${hint}`)} >&2; exit 1`, `stop: ${why}`)], notes: [why, hint] };
}

const dataDirOf = (conf: string | undefined) => /^\s*data_directory\s*=?\s*'([^']*)'/m.exec(conf ?? "")?.[1];
const includesConfD = (conf: string | undefined) => /^\s*include_dir\s*=?\s*'conf\.d'/m.test(conf ?? "");

/** Shell: stop unless `root` is a mount point (the data directory is never created on the local disk). */
const requireMount = (root: string) => `mountpoint -q ${quote(root)} || { echo ${quote(`fmc: ${root} is not mounted: refusing to touch PostgreSQL's data on the local disk`)} >&2; exit 1; }`;

/**
 * Where initdb builds a new cluster: beside the data directory, on the same filesystem, so
 * a finished cluster is renamed into place in one step. initdb on NFS makes thousands of
 * round trips (every file-size check asks the server) and can take minutes; one stopped
 * half-way (a timeout, a lost connection) leaves only this directory, which the next run
 * removes, never a half-made cluster in the data directory that a later run would take in.
 */
const initdbDir = (l: PostgresLayout) => `${l.dataDir.slice(0, l.dataDir.lastIndexOf("/"))}/.fmc-initdb-${l.dataDir.slice(l.dataDir.lastIndexOf("/") + 1)}`;

/** initdb may take minutes on NFS: the cluster's creation is allowed this long. */
const INITDB_SLOW_S = 20 * 60;

function clusterScript(l: PostgresLayout, root: string, nfs: boolean): string {
  const d = quote(l.dataDir);
  const conf = quote(`${l.configDir}/postgresql.conf`);
  const fresh = quote(initdbDir(l));
  const adopt = l.adoptCluster ?? "  exit 0";
  return [
    "set -euo pipefail",
    ...(nfs ? [requireMount(root)] : []),
    `if [ -s ${d}/PG_VERSION ] && [ -e ${conf} ]; then exit 0; fi`,
    `if [ -s ${d}/PG_VERSION ]; then`,
    adopt,
    `elif [ -d ${d} ] && [ -n "$(ls -A ${d})" ]; then`,
    `  echo ${quote(`fmc: ${l.dataDir} is not empty and holds no PostgreSQL cluster: not creating one there`)} >&2; exit 1`,
    "else",
    `  install -d -m 0755 ${quote(l.dataDir.slice(0, l.dataDir.lastIndexOf("/")))}`,
    // an earlier attempt that stopped half-way left only fmc's own directory
    `  rm -rf --one-file-system -- ${fresh}`,
    `  install -d -o postgres -g postgres -m 0700 ${fresh}`,
    `  cd / && ${l.initdb(fresh)}`,
    `  if [ -d ${d} ]; then rmdir -- ${d}; fi`,
    `  mv -T -- ${fresh} ${d}`,
    ...(l.adoptCluster ? [adopt] : []),
    "fi",
  ].join("\n");
}

function rolesCommand(pc: PhaseContext, l: PostgresLayout): Command {
  const conn = `-h ${POSTGRES_SOCKET_DIR} -p ${POSTGRES_PORT}`;
  const body = [
    "set -euo pipefail",
    "cd /",
    // a server that was just started may still be recovering
    `for i in $(seq 60); do ${l.binDir}/pg_isready -q ${conn} && break; sleep 1; done`,
    `runuser -u postgres -- ${l.binDir}/psql -X -q -v ON_ERROR_STOP=1 ${conn} -d postgres`,
  ].join("\n");
  const names = pc.render.spec.database!.databases.join(", ");
  return script(body, `psql: roles postgres, ${names} (passwords as SCRAM verifiers, on stdin), databases ${names}`, { data: rolesSql(pc.render), secret: true });
}

function planDatabase(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
  const ctx = pc.render;
  const db = ctx.spec.database!;
  const c: OpContext = { host: host.name, phase: PHASE, mask: (t) => maskVerifiers(pc.mask(t)) };
  const pg = postgresOnHost(pc, host, facts);
  const { family, layout: l } = pg;
  const root = db.dataDir;
  const src = nfsSource(ctx);
  const mount = dataMountUnit(ctx);
  const out: Change[] = [];
  const push = (ch: Change | undefined) => {
    if (ch) out.push(ch);
    return !!ch;
  };

  if (src && facts.guards.get(NFS_CLIENT_GUARD) !== 0) {
    return [
      blocked(
        c,
        `PostgreSQL's data cannot be mounted from ${src.what}: ${host.name}'s kernel has no NFS client`,
        `${host.name}'s kernel has no NFSv4 client (no nfs4 in /proc/filesystems, no nfsv4 module): a container shares a kernel without one`,
        `run ${host.name} as a VM (fmc lab up --vm database), or drop database.nfsExport to keep the data on the local disk`,
      ),
    ];
  }

  // Debian: the package must not create (and start) a cluster of its own on the local disk
  if (l.noDefaultCluster) push(fileChange(facts, { path: l.noDefaultCluster.path, content: l.noDefaultCluster.content }, c));
  if (family === "rhel-like" && !pg.installed && !facts.packages.get(PGDG_REPO_PACKAGE)) {
    out.push({ host: host.name, phase: PHASE, title: `add the PGDG repository (PostgreSQL ${l.version})`, commands: [pgdgRepository(facts.os.versionId.split(".")[0] || "9")], notes: [] });
  }
  const pkg = packageChange(facts, FAMILIES[family], [...(src ? [l.nfsClientPackage] : []), ...pg.install], c);
  if (pkg) out.push(pg.note ? { ...pkg, notes: [...pkg.notes, pg.note] } : pkg);

  // the mount, and the unit's binding to it, before anything reads or writes the data
  let mounted = true;
  if (src) {
    const m = databaseMountUnit(ctx, family)!;
    const unitFile = fileChange(facts, { path: unitPath(mount), content: m.content }, c);
    if (unitFile) out.push(markingReload({ ...unitFile, commands: [...unitFile.commands, cmd("systemctl", "daemon-reload")] }, mount));
    if (facts.units.get(mount)?.enabled !== "enabled") out.push({ host: host.name, phase: PHASE, title: `enable ${mount} (mounted at boot)`, commands: [cmd("systemctl", "enable", mount)], notes: [] });
    const live = facts.mounts.get(root);
    mounted = !!live && /^nfs/.test(live.type);
    const dropIn = fileChange(facts, { path: dropInPath(l), content: postgresDropIn(ctx, l, family) }, c);
    if (dropIn) out.push({ ...dropIn, commands: [...dropIn.commands, cmd("systemctl", "daemon-reload")] });
    const start = script(
      [
        `if ! timeout ${MOUNT_WAIT_S} systemctl start ${quote(mount)}; then`,
        `  systemctl --no-pager --lines=5 status ${quote(mount)} >&2 || true`,
        `  echo ${quote(`fmc: ${src.what} did not mount at ${root} within ${MOUNT_WAIT_S} s: is the NFS server on ${db.nfsExport ? ctx.spec.storage!.host : "?"} up, and does its export list this host?`)} >&2; exit 1`,
        "fi",
        `rm -f ${quote(pendingMarker(mount))}`,
      ].join("\n"),
      `systemctl start ${mount} (waits at most ${MOUNT_WAIT_S} s)`,
    );
    if (live && !mounted) {
      // another filesystem (a local disk, sshfs…) at the data root: `systemctl start` of the
      // mount would do nothing (something is mounted there) and fmc does not unmount what it
      // did not mount: it may hold someone's data
      out.push(
        blocked(
          c,
          `${root} on ${host.name} has ${live.device} (${live.type}) mounted, not ${src.what}`,
          `${live.device} (${live.type}) is mounted at ${root}: PostgreSQL's data belongs on the NFS export ${src.what}; fmc does not unmount a filesystem it did not mount`,
          `look at what ${live.device} holds, move it away and unmount it (umount ${root}); then fmc apply mounts the export there`,
        ),
      );
      return out;
    }
    if (!live) {
      const unit = facts.units.get(l.unit);
      const state = unit && unit.enabled !== "not-found" ? `${l.unit} is ${unit.active}` : `${l.unit} is not installed yet`;
      out.push({
        host: host.name,
        phase: PHASE,
        title: `mount ${src.what} at ${root} (${mount})`,
        commands: [start],
        notes: [
          `PostgreSQL does not run without its data: ${root} is not mounted (${mount} is ${facts.units.get(mount)?.active ?? "unknown"}), so ${state}; it is bound to the mount and refuses to start on the local disk`,
          "the cluster, its configuration and the service are planned once the mount is up",
        ],
        refreshesFacts: true,
      });
      return out;
    }
    if (live.device !== src.what || unitFile || reloadPending(facts, mount)) {
      // a new source or new options need a new mount: PostgreSQL stops for it
      const body = [
        "set -euo pipefail",
        `was=$(systemctl is-active ${quote(l.unit)} || true)`,
        `systemctl stop ${quote(l.unit)}`,
        `systemctl stop ${quote(mount)}`,
        start.shell,
        `if [ "$was" = active ]; then systemctl start ${quote(l.unit)}; fi`,
      ].join("\n");
      out.push({
        host: host.name,
        phase: PHASE,
        title: `remount ${root} from ${src.what}`,
        commands: [script(body, `stop ${l.unit}, remount ${root}, start ${l.unit} again if it ran`)],
        notes: [live.device !== src.what ? `${root} has ${live.device} mounted now` : `${mount} changed`, `PostgreSQL (${l.unit}) stops while ${root} is remounted`],
        refreshesFacts: true,
      });
    }
  } else {
    const dropIn = fileChange(facts, { path: dropInPath(l), content: postgresDropIn(ctx, l, family) }, c);
    if (dropIn) out.push({ ...dropIn, commands: [...dropIn.commands, cmd("systemctl", "daemon-reload")] });
  }

  // the cluster: one that is there is kept; a cluster of this version elsewhere is not taken over
  const conf = facts.files.get(`${l.configDir}/postgresql.conf`);
  const hasData = !!facts.files.get(`${l.dataDir}/PG_VERSION`);
  if (family === "debian-like" && conf) {
    const elsewhere = dataDirOf(conf.content);
    if (elsewhere && elsewhere !== l.dataDir) {
      out.push(
        blocked(
          c,
          `PostgreSQL ${l.version}/main on ${host.name} keeps its data in ${elsewhere}, not in ${l.dataDir}`,
          `the cluster ${l.version}/main already exists with its data in ${elsewhere} (not on ${src ? "the NFS mount" : "database.dataDir"}); fmc does not move or drop it`,
          `move its data by hand (pg_dump, then pg_dropcluster --stop ${l.version} main) or drop it if it holds nothing; then fmc apply`,
        ),
      );
      return out;
    }
  }
  if (!hasData || !conf) {
    out.push({
      host: host.name,
      phase: PHASE,
      title: hasData ? `take in the PostgreSQL ${l.version} data found in ${l.dataDir} (its configuration is missing)` : `create the PostgreSQL ${l.version} cluster in ${l.dataDir}${src ? " (on the NFS mount)" : ""}`,
      commands: [slow(script(clusterScript(l, root, !!src), hasData ? `pg_createcluster ${l.version} main on the existing ${l.dataDir}` : `initdb beside ${l.dataDir}, then renamed into place (only if ${src ? `${root} is mounted and ` : ""}it is empty)`), INITDB_SLOW_S)],
      notes: [],
      refreshesFacts: true,
    });
  }

  // configuration: fmc's include file (restart: listen_addresses), pg_hba.conf (reload)
  const own = { owner: "postgres", group: "postgres", mode: 0o640 };
  let restart = false;
  if (conf && !includesConfD(conf.content)) {
    const p = quote(`${l.configDir}/postgresql.conf`);
    out.push(
      markingReload(
        { host: host.name, phase: PHASE, title: `include conf.d/ in ${l.configDir}/postgresql.conf`, commands: [script(`grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'conf\\.d'" ${p} || echo "include_dir = 'conf.d'  # fmc" >> ${p}`, `append include_dir = 'conf.d' to ${l.configDir}/postgresql.conf`)], notes: [] },
        l.unit,
      ),
    );
    restart = true;
  }
  const confD = fileChange(facts, { path: `${l.configDir}/conf.d/fmc.conf`, content: postgresConf(host), ...own }, c);
  if (confD) {
    out.push(markingReload(confD, l.unit));
    restart = true;
  }
  const hba = fileChange(facts, { path: `${l.configDir}/pg_hba.conf`, content: pgHba(ctx), ...own }, c);
  if (hba) out.push(markingReload(hba, l.unit));
  const pending = reloadPending(facts, l.unit);
  const svc = serviceChange(
    facts,
    {
      unit: l.unit,
      enabled: true,
      running: true,
      reload: restart || !!hba,
      pending,
      // listen_addresses needs a restart; pg_hba.conf a reload; an earlier run's change may have been either
      reloadBy: restart || pending ? "restart" : "reload",
      riskIfTouched: restart || pending ? [`restarts PostgreSQL: open connections are dropped`] : [],
    },
    c,
  );
  push(svc);

  // roles and databases: the check file first (the guard reads it), then the SQL when the server differs
  const check = fileChange(facts, { path: ROLES_CHECK, content: rolesCheckSql(ctx), mode: 0o600, secret: true }, c);
  push(check);
  if (check || facts.guards.get(ROLES_GUARD) !== 0) {
    out.push({ host: host.name, phase: PHASE, title: `roles and databases: ${db.databases.join(", ")} (each owned by its role), passwords from the secret store`, commands: [rolesCommand(pc, l)], notes: [] });
  }
  return out;
}

export const database: Phase = {
  name: PHASE,
  description: "PostgreSQL on the database host, its data on the storage host's NFS export (bound to the mount), roles and databases",
  hosts: (pc) => (pc.render.spec.database ? [pc.render.topo.host(pc.render.spec.database.host)] : []),
  facts: (pc) => databaseFacts(pc),
  plan: planDatabase,
};
