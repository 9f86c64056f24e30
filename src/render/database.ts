// The database host's files: the NFS mount of PostgreSQL's data directory as a systemd
// mount unit, the drop-in that binds PostgreSQL's unit to that mount (it never starts, or
// creates a cluster, on the local disk), postgresql.conf's fmc part, pg_hba.conf, and the
// SQL that makes the spec's roles and databases. Passwords reach PostgreSQL only as
// SCRAM-SHA-256 verifiers computed here: the plain password never leaves this machine.
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { postgresLayout, type PostgresLayout } from "../hosts/os.js";
import type { Host } from "../model/schema.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER, HEADER_TEXT, lines } from "./types.js";
import { mountUnitName, unitFile } from "./systemd.js";
import { configWord, systemdPath } from "./quote.js";
import { FmcError } from "../errors.js";
import { postgresOwnerName } from "../state/secrets.js";

export const POSTGRES_PORT = 5432;
/** The server's socket directory on both families (Debian's /var/run/postgresql is the same place). */
export const POSTGRES_SOCKET_DIR = "/run/postgresql";
/** SELinux type of PostgreSQL's data: the NFS mount carries it (NFS has no per-file labels). */
const POSTGRES_SELINUX_CONTEXT = "system_u:object_r:postgresql_db_t:s0";
/** Seconds the mount waits for the NFS server at boot (a server that reboots too takes ~40 s). */
const MOUNT_RETRY_MIN = 5;

/** Names PostgreSQL keeps for itself: never a spec database or role. */
const RESERVED = new Set(["postgres", "template0", "template1", "public"]);

/** A SQL identifier, double-quoted (so reserved words such as "user" work); the spec's format allows nothing that needs escaping. */
function sqlName(v: string): string {
  if (!/^[a-z][a-z0-9_]{0,62}$/.test(v)) throw new FmcError("RENDER_UNSAFE", `refusing to write ${JSON.stringify(v)} as a SQL name`, "database names are lowercase a-z, 0-9 and _");
  return `"${v}"`;
}

/** A SQL string literal. */
function sqlString(v: string): string {
  if (/[\0\\]/.test(v)) throw new FmcError("RENDER_UNSAFE", "refusing to write a NUL or backslash into a SQL literal");
  return `'${v.replace(/'/g, "''")}'`;
}

/** The OS family the spec names for a host (the lab's hosts are Debian whatever it says: phases use facts). */
function specFamily(h: Host): "debian-like" | "rhel-like" {
  return h.os === "debian" ? "debian-like" : "rhel-like";
}

/** The layout of the spec's PostgreSQL on a family, with its data below database.dataDir. */
export function layoutFor(ctx: ClusterContext, family: "debian-like" | "rhel-like", version?: string): PostgresLayout {
  const db = ctx.spec.database!;
  return postgresLayout(family, version ?? db.postgresVersion, db.dataDir);
}

/** The NFS server and export of the data directory, when the spec puts it on NFS. */
export function nfsSource(ctx: ClusterContext): { server: string; export: string; what: string } | undefined {
  const db = ctx.spec.database;
  const st = ctx.spec.storage;
  if (!db?.nfsExport || !st) return undefined;
  const server = ctx.topo.host(st.host).address;
  return { server, export: db.nfsExport, what: `${server}:${db.nfsExport}` };
}

export const dataMountUnit = (ctx: ClusterContext) => mountUnitName(ctx.spec.database!.dataDir);

/**
 * NFS options: v4.2, hard (a server that goes away blocks I/O until it is back; it never
 * returns errors PostgreSQL would take for a broken disk), 60 s timeouts with 2 retries
 * before "server not responding" is logged, retries of the mount itself for a few minutes
 * at boot. On SELinux hosts the mount labels everything postgresql_db_t; the context
 * needs no quotes (they are only needed around values that hold commas).
 */
function mountOptions(family: "debian-like" | "rhel-like"): string {
  return ["rw", "hard", "vers=4.2", "proto=tcp", "timeo=600", "retrans=2", `retry=${MOUNT_RETRY_MIN}`, "noatime", "_netdev", ...(family === "rhel-like" ? [`context=${POSTGRES_SELINUX_CONTEXT}`] : [])].join(",");
}

export function databaseMountUnit(ctx: ClusterContext, family: "debian-like" | "rhel-like"): { name: string; content: string } | undefined {
  const src = nfsSource(ctx);
  if (!src) return undefined;
  const st = ctx.spec.storage!;
  return {
    name: dataMountUnit(ctx),
    content: unitFile(
      {
        Unit: [
          ["Description", `PostgreSQL data from ${st.host}:${src.export} (fmc)`],
          ["Wants", "network-online.target"],
          ["After", "network-online.target"],
        ],
        Mount: [
          ["What", systemdPath(src.what)],
          ["Where", systemdPath(ctx.spec.database!.dataDir)],
          ["Type", "nfs4"],
          ["Options", mountOptions(family)],
          // mount.nfs retries for retry= minutes: systemd must not stop it earlier
          ["TimeoutSec", `${MOUNT_RETRY_MIN * 60 + 30}`],
        ],
        Install: [["WantedBy", "remote-fs.target"]],
      },
      HEADER_TEXT,
    ),
  };
}

export const dropInPath = (layout: PostgresLayout) => `/etc/systemd/system/${layout.unit}.d/fmc.conf`;

/**
 * PostgreSQL's unit follows its data: it needs the mount (RequiresMountsFor), is ordered
 * after it and stopped with it (BindsTo), and refuses to start unless the data directory's
 * mount point really is a mount point (Assert, and the same check as a first ExecStartPre,
 * which also covers a manual `pg_ctlcluster`-less start through the unit).
 */
export function postgresDropIn(ctx: ClusterContext, layout: PostgresLayout, family: "debian-like" | "rhel-like"): string {
  const root = systemdPath(ctx.spec.database!.dataDir);
  const nfs = !!nfsSource(ctx);
  const mount = dataMountUnit(ctx);
  return unitFile(
    {
      Unit: [
        ["RequiresMountsFor", root],
        ...(nfs
          ? ([
              ["BindsTo", mount],
              ["After", mount],
              ["AssertPathIsMountPoint", root],
            ] as Array<[string, string]>)
          : []),
      ],
      Service: [
        ...(nfs ? ([["ExecStartPre", `/usr/bin/mountpoint -q ${root}`]] as Array<[string, string]>) : []),
        // PGDG's unit reads PGDATA from its environment; Debian's reads its cluster's config
        ...(family === "rhel-like" ? ([["Environment", `PGDATA=${systemdPath(layout.dataDir)}/`]] as Array<[string, string]>) : []),
      ],
    },
    HEADER_TEXT,
  );
}

/** The subnets the applications connect from: those of the K3s nodes (else a subnet named cluster). */
function clusterSubnets(ctx: ClusterContext): string[] {
  const k3s = ctx.spec.hosts.filter((h) => h.roles.includes("k3s-server") || h.roles.includes("k3s-agent"));
  const out = new Set<string>();
  for (const h of k3s) {
    const s = ctx.topo.subnetOf(h.address);
    if (s) out.add(s.cidr);
  }
  if (out.size === 0) {
    const named = ctx.spec.network.subnets.find((s) => s.name === "cluster");
    if (named) out.add(named.cidr);
  }
  return [...out];
}

/** pg_hba.conf: the admin over the local socket, passwords on loopback, each database's owner from the cluster subnets. Nothing else. */
export function pgHba(ctx: ClusterContext): string {
  const db = ctx.spec.database!;
  const row = (type: string, database: string, user: string, address: string, method: string) => `${type.padEnd(6)} ${database.padEnd(16)} ${user.padEnd(16)} ${address.padEnd(18)} ${method}`;
  return lines(
    HEADER("#"),
    "# TYPE DATABASE         USER             ADDRESS            METHOD",
    row("local", "all", "all", "", "peer"),
    row("host", "all", "all", "127.0.0.1/32", "scram-sha-256"),
    row("host", "all", "all", "::1/128", "scram-sha-256"),
    ...db.databases.flatMap((d) => clusterSubnets(ctx).map((cidr) => row("host", configWord("pg_hba.conf", d), configWord("pg_hba.conf", d), configWord("pg_hba.conf", cidr), "scram-sha-256"))),
  );
}

/** fmc's part of postgresql.conf (conf.d/fmc.conf): where it listens and how passwords are kept. */
export function postgresConf(host: Host): string {
  return lines(
    HEADER("#"),
    `listen_addresses = ${sqlString(`${host.address},localhost`)}`,
    `port = ${POSTGRES_PORT}`,
    "password_encryption = 'scram-sha-256'",
  );
}

/**
 * PostgreSQL's SCRAM-SHA-256 verifier of a password (RFC 5802/7677, as PostgreSQL stores
 * it). The salt is derived from the password and the role, so the same secret gives the
 * same verifier on every run and fmc can compare instead of resetting.
 */
export function scramVerifier(password: string, role: string, iterations = 4096): string {
  const salt = createHmac("sha256", password).update(`fmc-scram-salt:${role}`).digest().subarray(0, 16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** Roles (name = the database, its password) and the superuser, with their verifiers. */
function roles(ctx: ClusterContext): Array<{ role: string; verifier: string; superuser: boolean }> {
  const db = ctx.spec.database!;
  for (const d of db.databases) {
    if (RESERVED.has(d)) throw new FmcError("DATABASE_NAME", `database.databases: ${d} is PostgreSQL's own name`, "choose another name for the application's database");
  }
  return [
    { role: "postgres", verifier: scramVerifier(ctx.secrets.get("postgres-superuser"), "postgres"), superuser: true },
    ...db.databases.map((d) => ({ role: d, verifier: scramVerifier(ctx.secrets.get(postgresOwnerName(d)), d), superuser: false })),
  ];
}

/** Idempotent SQL (psql, ON_ERROR_STOP): roles with their passwords, each database owned by its role, closed to everyone else. */
export function rolesSql(ctx: ClusterContext): string {
  const out: string[] = ["-- fmc: roles and databases of the cluster spec", "\\set ON_ERROR_STOP on"];
  for (const r of roles(ctx)) {
    if (!r.superuser) out.push(`SELECT 'CREATE ROLE ${sqlName(r.role)}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${sqlString(r.role)})\\gexec`);
    const attrs = r.superuser ? "LOGIN" : "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION";
    out.push(`ALTER ROLE ${sqlName(r.role)} WITH ${attrs} PASSWORD ${sqlString(r.verifier)};`);
  }
  for (const d of ctx.spec.database!.databases) {
    out.push(`SELECT 'CREATE DATABASE ${sqlName(d)} OWNER ${sqlName(d)} ENCODING ''UTF8''' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = ${sqlString(d)})\\gexec`);
    out.push(`ALTER DATABASE ${sqlName(d)} OWNER TO ${sqlName(d)};`);
    out.push(`REVOKE ALL ON DATABASE ${sqlName(d)} FROM PUBLIC;`);
  }
  return out.join("\n") + "\n";
}

/** One query printing `t` when the server has exactly what rolesSql makes (read as a guard). */
export function rolesCheckSql(ctx: ClusterContext): string {
  const checks: string[] = [];
  for (const r of roles(ctx)) {
    checks.push(`coalesce((SELECT rolcanlogin AND rolpassword = ${sqlString(r.verifier)}${r.superuser ? "" : " AND NOT rolsuper"} FROM pg_authid WHERE rolname = ${sqlString(r.role)}), false)`);
  }
  for (const d of ctx.spec.database!.databases) {
    checks.push(`coalesce((SELECT pg_get_userbyid(datdba) = ${sqlString(d)} AND NOT has_database_privilege('public', oid, 'CONNECT') FROM pg_database WHERE datname = ${sqlString(d)}), false)`);
  }
  return `-- fmc: does the server have the spec's roles and databases?\nSELECT ${checks.join("\n   AND ")};\n`;
}

/** Replaces SCRAM verifiers in text (diffs of files that hold them). */
export const maskVerifiers = (text: string) => text.replace(/SCRAM-SHA-256\$[^'\s]+/g, "<scram-verifier>");

/** The database host's files as `fmc render` writes them, for the OS the spec names. */
export function renderDatabase(ctx: ClusterContext): Artifact[] {
  const db = ctx.spec.database;
  if (!db) return [];
  const host = ctx.topo.host(db.host);
  const family = specFamily(host);
  const layout = layoutFor(ctx, family);
  const dir = `database/${host.name}`;
  const m = databaseMountUnit(ctx, family);
  return [
    ...(m ? [{ path: `${dir}/${m.name}`, content: m.content }] : []),
    { path: `${dir}/${layout.unit}.d/fmc.conf`, content: postgresDropIn(ctx, layout, family) },
    { path: `${dir}/pg_hba.conf`, content: pgHba(ctx) },
    { path: `${dir}/conf.d/fmc.conf`, content: postgresConf(host) },
  ];
}
