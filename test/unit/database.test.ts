// Database tests: the NFS mount unit and PostgreSQL's drop-in pass systemd-analyze verify
// against Debian's postgresql@ template and PGDG's unit, with the binding to the mount in
// place; pg_hba.conf's exact lines; the cluster script refuses an unmounted or foreign data
// directory and creates a real cluster on a real mount (a tmpfs in a private mount
// namespace); the phase converges from faked Debian and AlmaLinux facts and then plans
// nothing, says why PostgreSQL waits while its mount is missing, and never puts a password
// on a command line; backups and restores run through a fake and a local transport
// against a real PostgreSQL (roles, SCRAM logins, pg_dump, a dropped table restored), a
// damaged backup is refused before anything reaches the host, retention keeps the newest.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { type Command } from "../../src/hosts/command.js";
import { quote } from "../../src/shell.js";
import { postgresLayout, type PostgresLayout } from "../../src/hosts/os.js";
import type { ExecResult, StreamIo, Transport } from "../../src/hosts/transport.js";
import type { Change } from "../../src/ops/change.js";
import { database, NFS_CLIENT_GUARD, ROLES_GUARD, ROLES_CHECK } from "../../src/phases/database.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import { databaseMountUnit, dropInPath, pgHba, postgresConf, postgresDropIn, rolesCheckSql, rolesSql, scramVerifier } from "../../src/render/database.js";
import type { ClusterContext } from "../../src/state/context.js";
import { checksumLine, localStore, remoteStore, verifiedChecksum } from "../../src/local/backup-store.js";
import { backupDatabase, expired, parseBackupName, restoreDatabase } from "../../src/runbooks/postgres-backup.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { contextFor, requireTool, tempDir } from "../helpers.js";
import { BashTransport } from "../shell-transport.js";

const sh = (command: string, input?: string) => spawnSync("bash", ["-c", command], { encoding: "utf8", input });
const b64 = (s: string) => Buffer.from(s).toString("base64");
const NFS_WHAT = "10.17.4.27:/srv/nfs/postgresql";

// ---- rendered files

test("mount unit and drop-in pass systemd-analyze verify with Debian's postgresql@ template and PGDG's unit; PostgreSQL needs, follows and is bound to the mount", (t) => {
  requireTool("systemd-analyze");
  const ctx = contextFor();
  for (const family of ["debian-like", "rhel-like"] as const) {
    const dir = tempDir(t);
    const l = postgresLayout(family, family === "debian-like" ? "15" : "16", "/var/lib/pgsql");
    const m = databaseMountUnit(ctx, family)!;
    assert.equal(m.name, "var-lib-pgsql.mount");
    writeFileSync(join(dir, m.name), m.content);
    if (family === "debian-like") {
      requireTool("pg_ctlcluster");
      writeFileSync(join(dir, "postgresql@.service"), readFileSync("/lib/systemd/system/postgresql@.service"));
    } else {
      // PGDG's postgresql-16.service as AlmaLinux ships it, its programs pointed at this machine's PostgreSQL
      const bin = "/usr/lib/postgresql/15/bin";
      writeFileSync(
        join(dir, l.unit),
        `[Unit]\nDescription=PostgreSQL 16 database server\nAfter=syslog.target network-online.target\n\n[Service]\nType=notify\nUser=postgres\nGroup=postgres\nEnvironment=PGDATA=/var/lib/pgsql/16/data/\nOOMScoreAdjust=-1000\nExecStartPre=${bin}/pg_controldata \${PGDATA}\nExecStart=${bin}/postgres -D \${PGDATA}\nExecReload=/bin/kill -HUP $MAINPID\nKillMode=mixed\nKillSignal=SIGINT\nTimeoutSec=0\n\n[Install]\nWantedBy=multi-user.target\n`,
      );
    }
    const drop = postgresDropIn(ctx, l, family);
    mkdirSync(join(dir, `${l.unit}.d`));
    writeFileSync(join(dir, `${l.unit}.d`, "fmc.conf"), drop);
    const r = spawnSync("systemd-analyze", ["verify", join(dir, m.name), join(dir, l.unit)], { encoding: "utf8", cwd: dir });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /fmc\.conf|var-lib-pgsql\.mount|Unknown|ignoring/, r.stderr);
    // the drop-in is really read: a misspelt key in it is reported
    writeFileSync(join(dir, `${l.unit}.d`, "fmc.conf"), `${drop}\n[Unit]\nBindsToo=var-lib-pgsql.mount\n`);
    assert.match(spawnSync("systemd-analyze", ["verify", join(dir, l.unit)], { encoding: "utf8", cwd: dir }).stderr, /fmc\.conf:\d+: Unknown key 'BindsToo'/);
    // binding and ordering
    const keys = (text: string) => text.split("\n").filter((x) => /^\w+=/.test(x));
    assert.deepEqual(keys(drop).filter((x) => !x.startsWith("Environment=")), [
      "RequiresMountsFor=/var/lib/pgsql",
      "BindsTo=var-lib-pgsql.mount",
      "After=var-lib-pgsql.mount",
      "AssertPathIsMountPoint=/var/lib/pgsql",
      "ExecStartPre=/usr/bin/mountpoint -q /var/lib/pgsql",
    ]);
    const opts = /^Options=(.*)$/m.exec(m.content)![1]!.split(",");
    for (const o of ["hard", "vers=4.2", "_netdev", "timeo=600", "retrans=2"]) assert.ok(opts.includes(o), o);
    assert.ok(!opts.includes("soft") && !opts.includes("nofail"));
    assert.match(m.content, new RegExp(`^What=${NFS_WHAT}$`, "m"));
    assert.match(m.content, /^Type=nfs4$/m);
    if (family === "rhel-like") {
      assert.ok(opts.includes("context=system_u:object_r:postgresql_db_t:s0"), "SELinux: the mount carries PostgreSQL's type");
      assert.equal(l.unit, "postgresql-16.service");
      assert.equal(dropInPath(l), "/etc/systemd/system/postgresql-16.service.d/fmc.conf");
      assert.match(drop, /^Environment=PGDATA=\/var\/lib\/pgsql\/16\/data\/$/m);
    } else {
      assert.ok(!opts.some((o) => o.startsWith("context=")));
      assert.equal(dropInPath(l), "/etc/systemd/system/postgresql@15-main.service.d/fmc.conf");
      assert.doesNotMatch(drop, /Environment=/);
    }
  }
});

test("pg_hba.conf: peer on the socket, passwords on loopback, each database's owner from the cluster subnet, nothing else; listen on the host and localhost", () => {
  const ctx = contextFor(`${SEED_YAML.replace("databases: [app]", "databases: [app, user]")}`);
  const rules = pgHba(ctx)
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => l.split(/\s+/).join(" "));
  assert.deepEqual(rules, [
    "local all all peer",
    "host all all 127.0.0.1/32 scram-sha-256",
    "host all all ::1/128 scram-sha-256",
    "host app app 10.17.4.0/24 scram-sha-256",
    "host user user 10.17.4.0/24 scram-sha-256",
  ]);
  const conf = postgresConf(ctx.topo.host("postgresql1"));
  assert.match(conf, /^listen_addresses = '10\.17\.3\.14,localhost'$/m);
  assert.match(conf, /^password_encryption = 'scram-sha-256'$/m);
  // a reserved word as a database name is quoted in SQL
  assert.match(rolesSql(ctx), /CREATE DATABASE "user" OWNER "user"/);
});

// ---- the cluster script on a real mount

/** Runs a planned shell script with the data root moved to `root`, in a private mount namespace. */
function runInMountNs(body: string, setup: string): ReturnType<typeof sh> {
  return sh(`unshare -m --propagation private bash -c ${quote(`${setup}\n${body}`)}`);
}

test("the cluster is created only on the mount and only in an empty directory (real initdb on a tmpfs mount)", (t) => {
  requireTool("unshare");
  const root = tempDir(t, "fmchelp-db-");
  chmodSync(root, 0o755);
  const ctx = contextFor(SEED_YAML.replace("dataDir: /var/lib/pgsql", `dataDir: ${root}`));
  const facts = factsOf({ family: "rhel-like", installed: true, mounted: false, root });
  const pc = pcFor(ctx);
  const host = ctx.topo.host("postgresql1");
  // the mount present: the plan creates the cluster with this script
  const plan = database.plan(pc, host, factsOf({ family: "rhel-like", installed: true, mounted: true, root }));
  const create = plan.find((c) => c.title.startsWith("create the PostgreSQL 16 cluster"))!;
  assert.ok(create, plan.map((c) => c.title).join("\n"));
  assert.ok(!database.plan(pc, host, facts).some((c) => /cluster/.test(c.title)), "nothing is created while the mount is missing");
  // PGDG's initdb is this machine's
  const body = create.commands[0]!.shell.replaceAll("/usr/pgsql-16/bin", "/usr/lib/postgresql/15/bin");
  // not mounted: refused, nothing written on the local disk
  const r1 = sh(body);
  assert.equal(r1.status, 1);
  assert.match(r1.stderr, /is not mounted: refusing/);
  assert.deepEqual(readdirSync(root), []);
  // mounted but holding something else: refused
  const r2 = runInMountNs(body, `mount -t tmpfs fmchelp-db ${quote(root)} && mkdir -p ${quote(`${root}/16/data`)} && touch ${quote(`${root}/16/data/precious`)}`);
  assert.equal(r2.status, 1, r2.stderr);
  assert.match(r2.stderr, /not empty and holds no PostgreSQL cluster/);
  // mounted and empty: a real cluster, owned by postgres, 0700; a second run changes nothing
  const r3 = runInMountNs(`${body}\nstat -c '%U %a' ${quote(`${root}/16/data`)}\ncat ${quote(`${root}/16/data/PG_VERSION`)}\nsum=$(find ${quote(root)} -type f | sort | xargs md5sum | md5sum)\n(\n${body}\n)\n[ "$sum" = "$(find ${quote(root)} -type f | sort | xargs md5sum | md5sum)" ] && echo unchanged`, `mount -t tmpfs fmchelp-db ${quote(root)}`);
  assert.equal(r3.status, 0, r3.stderr);
  assert.match(r3.stdout, /^postgres 700\n15\nunchanged\n$/m, r3.stdout + r3.stderr);
  assert.deepEqual(readdirSync(root), [], "the tmpfs went away with its namespace");
});

test("initdb stopped half-way leaves no half-made cluster in the data directory; the next run starts afresh and finishes (real initdb on a tmpfs mount)", (t) => {
  requireTool("unshare");
  const root = tempDir(t, "fmchelp-db-");
  chmodSync(root, 0o755);
  const ctx = contextFor(SEED_YAML.replace("dataDir: /var/lib/pgsql", `dataDir: ${root}`));
  const plan = database.plan(pcFor(ctx), ctx.topo.host("postgresql1"), factsOf({ family: "rhel-like", installed: true, mounted: true, root }));
  const create = plan.find((c) => c.title.startsWith("create the PostgreSQL 16 cluster"))!;
  assert.ok(create, plan.map((c) => c.title).join("\n"));
  assert.ok((create.commands[0]!.slowS ?? 0) >= 600, "initdb on NFS may take minutes: the step is allowed them");
  const real = create.commands[0]!.shell.replaceAll("/usr/pgsql-16/bin", "/usr/lib/postgresql/15/bin");
  // an initdb that dies after writing part of a cluster (as a timeout would stop it)
  const dies = real.replace(/runuser -u postgres -- \S+\/initdb --pgdata=(\S+) .*$/m, "runuser -u postgres -- sh -c 'echo 15 > $1/PG_VERSION; mkdir $1/base; exit 9' sh $1");
  assert.notEqual(dies, real, "the script runs initdb as postgres");
  const data = quote(`${root}/16/data`);
  const r = runInMountNs(
    [
      // each as its own script, as apply runs it (set -e holds only there)
      `bash -c ${quote(dies)} && echo "no failure"; echo "first: $?"`,
      `[ -e ${data}/PG_VERSION ] && echo "half-made cluster in place"`,
      `ls -A ${quote(`${root}/16`)}`,
      `bash -c ${quote(real)} >/dev/null && echo second: ok`,
      `cat ${data}/PG_VERSION; ls -A ${quote(`${root}/16`)}; stat -c '%U %a' ${data}`,
    ].join("\n"),
    `mount -t tmpfs fmchelp-db ${quote(root)}`,
  );
  assert.doesNotMatch(r.stdout, /no failure|half-made/, r.stdout + r.stderr);
  assert.match(r.stdout, /^first: 9\n/m);
  // only fmc's own directory beside the data directory (an empty data directory at most)
  assert.match(r.stdout, /^first: 9\n(?:data\n)?\.fmc-initdb-data\n/m, r.stdout);
  assert.match(r.stdout, /second: ok\n15\ndata\npostgres 700\n$/, r.stdout + r.stderr);
});

// ---- planning from facts

interface FactsModel {
  family: "debian-like" | "rhel-like";
  root?: string;
  installed?: boolean | string[];
  mounted?: boolean | string;
  files?: Map<string, { content: string; mode: number; owner: string; group: string }>;
  units?: Map<string, { active: string; enabled: string }>;
  guards?: Record<string, number>;
  nfsKernel?: boolean;
}

function factsOf(m: FactsModel): HostFacts {
  const root = m.root ?? "/var/lib/pgsql";
  const debian = m.family === "debian-like";
  const pkgs = m.installed === true ? (debian ? ["postgresql-15", "nfs-common"] : ["postgresql16-server", "nfs-utils", "pgdg-redhat-repo"]) : m.installed || [];
  const files = [...(m.files ?? new Map())].map(([p, f]) => `${p} ${f.mode.toString(8)} ${f.owner} ${f.group} ${b64(f.content)}`);
  const units = [...(m.units ?? new Map())].flatMap(([u, s]) => [`Id=${u}`, `ActiveState=${s.active}`, `UnitFileState=${s.enabled}`, ""]);
  const guards = { [NFS_CLIENT_GUARD]: m.nfsKernel === false ? 1 : 0, [ROLES_GUARD]: 1, ...(m.guards ?? {}) };
  const sections: Record<string, string[]> = {
    os: debian ? ["ID=debian", 'VERSION_ID="12"'] : ["ID=almalinux", 'ID_LIKE="rhel centos fedora"', 'VERSION_ID="9.4"'],
    hostname: ["postgresql1"],
    addr: ["eth0 10.17.3.14/24"],
    units,
    packages: pkgs.map((p) => `${p} install ok installed`),
    files,
    guard: Object.entries(guards).map(([k, v]) => `${k} ${v}`),
    mounts: ["/dev/vda1 / ext4 rw 0 0", ...(m.mounted ? [`${typeof m.mounted === "string" ? m.mounted : NFS_WHAT} ${root} nfs4 rw,relatime,vers=4.2,hard 0 0`] : [])],
  };
  return parseFacts("postgresql1", Object.entries(sections).map(([k, v]) => [`@${k}`, ...v].join("\n")).join("\n") + "\n@end\n");
}

function pcFor(ctx: ClusterContext): PhaseContext {
  return { render: ctx, mask: (x) => ctx.secrets.mask(x), loginUser: () => "root" };
}

/** A host that does what the planned changes say, by the changes' files and titles. */
class FakeHost {
  files = new Map<string, { content: string; mode: number; owner: string; group: string }>();
  units = new Map<string, { active: string; enabled: string }>();
  installed: string[] = [];
  mounted = false;
  rolesOk = false;
  constructor(
    readonly family: "debian-like" | "rhel-like",
    readonly l: PostgresLayout,
  ) {}
  facts(): HostFacts {
    return factsOf({ family: this.family, installed: this.installed, mounted: this.mounted, files: this.files, units: this.units, guards: { [ROLES_GUARD]: this.rolesOk ? 0 : 1 } });
  }
  apply(c: Change): void {
    const l = this.l;
    if (c.file) this.files.set(c.file.path, { content: c.file.content, mode: c.file.mode ?? 0o644, owner: c.file.owner ?? "root", group: c.file.group ?? "root" });
    const t = c.title;
    if (t.startsWith("install ")) this.installed.push(...t.slice(8).split(", "));
    if (t.startsWith("add the PGDG repository")) this.installed.push("pgdg-redhat-repo");
    if (t.startsWith("enable ") && t.includes(".mount")) this.units.set(t.split(" ")[1]!, { active: this.units.get(t.split(" ")[1]!)?.active ?? "inactive", enabled: "enabled" });
    if (t.startsWith("mount ") || t.startsWith("remount ")) this.mounted = true;
    if (t.startsWith("create the PostgreSQL")) {
      this.files.set(`${l.dataDir}/PG_VERSION`, { content: `${l.version}\n`, mode: 0o600, owner: "postgres", group: "postgres" });
      const conf = this.family === "debian-like" ? `data_directory = '${l.dataDir}'\ninclude_dir = 'conf.d'\n` : "#include_dir = '...'\n";
      this.files.set(`${l.configDir}/postgresql.conf`, { content: conf, mode: 0o600, owner: "postgres", group: "postgres" });
    }
    if (t.startsWith("include conf.d/")) {
      const f = this.files.get(`${l.configDir}/postgresql.conf`)!;
      this.files.set(`${l.configDir}/postgresql.conf`, { ...f, content: `${f.content}include_dir = 'conf.d'  # fmc\n` });
    }
    if (t.includes(l.unit) && /start|reload|restart|enable/.test(t) && !c.file) this.units.set(l.unit, { active: "active", enabled: "enabled" });
    if (t.startsWith("roles and databases")) this.rolesOk = true;
  }
}

/** Plans and "applies" until nothing is planned; returns every change in order. */
function converge(pc: PhaseContext, host: FakeHost): Change[] {
  const all: Change[] = [];
  for (let round = 0; round < 10; round++) {
    const plan = database.plan(pc, pc.render.topo.host("postgresql1"), host.facts());
    if (plan.length === 0) return all;
    // apply re-plans after a change that refreshes facts, as the engine does
    const upTo = plan.findIndex((c) => c.refreshesFacts);
    const run = upTo < 0 ? plan : plan.slice(0, upTo + 1);
    for (const c of run) host.apply(c);
    all.push(...run);
  }
  assert.fail("the database phase did not converge in 10 rounds");
}

function assertNoSecretsOnCommandLines(ctx: ClusterContext, changes: readonly Change[]): void {
  for (const c of changes) {
    for (const x of c.commands) {
      assert.deepEqual(ctx.secrets.leaksInto(`${x.shell}\n${x.display}`), [], `${c.title}: ${x.display}`);
      assert.doesNotMatch(`${x.shell}\n${x.display}`, /SCRAM-SHA-256\$/, `${c.title}: a verifier on a command line`);
      if (!x.stdinSecret && x.stdin) assert.deepEqual(ctx.secrets.leaksInto(x.stdin), [], `${c.title}: secret stdin not marked`);
    }
    assert.doesNotMatch(`${c.title}\n${c.notes.join("\n")}\n${c.diff ?? ""}`, /SCRAM-SHA-256\$\d/);
    assert.deepEqual(ctx.secrets.leaksInto(`${c.diff ?? ""}`), []);
  }
}

test("database phase on Debian: no default cluster, packages, mount, binding, cluster on the mount, config, service, roles; then nothing; no password on a command line", () => {
  const ctx = contextFor();
  const pc = pcFor(ctx);
  const host = new FakeHost("debian-like", postgresLayout("debian-like", "15", "/var/lib/pgsql"));
  const all = converge(pc, host);
  const titles = all.map((c) => c.title);
  const at = (re: RegExp) => {
    const i = titles.findIndex((x) => re.test(x));
    assert.ok(i >= 0, `${re} in\n${titles.join("\n")}`);
    return i;
  };
  // the package's own cluster is off before the package comes
  assert.ok(at(/^create \/etc\/postgresql-common\/createcluster\.d\/fmc\.conf$/) < at(/^install /));
  assert.match(host.files.get("/etc/postgresql-common/createcluster.d/fmc.conf")!.content, /^create_main_cluster = false$/m);
  // apt has no postgresql-16 here: bookworm's 15, said so
  assert.match(titles[at(/^install /)]!, /^install nfs-common, postgresql-15$/);
  assert.ok(all[at(/^install /)]!.notes.some((n) => /no postgresql-16/.test(n)));
  // mount unit and binding before the mount; the mount before the cluster; the cluster before its config and service
  assert.ok(at(/^create \/etc\/systemd\/system\/var-lib-pgsql\.mount$/) < at(/^mount 10\.17\.4\.27/));
  assert.ok(at(/^create \/etc\/systemd\/system\/postgresql@15-main\.service\.d\/fmc\.conf$/) < at(/^mount /));
  assert.ok(at(/^mount /) < at(/^create the PostgreSQL 15 cluster in \/var\/lib\/pgsql\/15\/main \(on the NFS mount\)$/));
  assert.ok(at(/^create the PostgreSQL/) < at(/^create \/etc\/postgresql\/15\/main\/pg_hba\.conf$/));
  assert.ok(at(/pg_hba\.conf$/) < at(/postgresql@15-main\.service$/));
  assert.ok(at(/postgresql@15-main\.service$/) < at(/^roles and databases: app/));
  assert.ok(!titles.some((x) => /include conf\.d/.test(x)), "Debian's postgresql.conf includes conf.d already");
  assert.equal(host.files.get(ROLES_CHECK)!.mode, 0o600);
  assertNoSecretsOnCommandLines(ctx, all);
  const roles = all.find((c) => c.title.startsWith("roles and databases"))!.commands[0]!;
  assert.ok(roles.stdinSecret && roles.stdin!.includes(scramVerifier(ctx.secrets.get("postgres-owner/app"), "app")));
  // converged: the re-plan is empty
  assert.deepEqual(database.plan(pc, ctx.topo.host("postgresql1"), host.facts()), []);
  // a changed pg_hba reloads; a changed listen address restarts, and says so
  host.files.set("/etc/postgresql/15/main/pg_hba.conf", { ...host.files.get("/etc/postgresql/15/main/pg_hba.conf")!, content: "local all all trust\n" });
  assert.deepEqual(database.plan(pc, ctx.topo.host("postgresql1"), host.facts()).map((c) => c.title), ["update /etc/postgresql/15/main/pg_hba.conf", "reload (configuration changed) postgresql@15-main.service"]);
  host.files.delete("/etc/postgresql/15/main/conf.d/fmc.conf");
  const restart = database.plan(pc, ctx.topo.host("postgresql1"), host.facts()).at(-1)!;
  assert.match(restart.title, /^restart .*postgresql@15-main\.service$/);
  assert.deepEqual(restart.notes, ["restarts PostgreSQL: open connections are dropped"]);
});

test("database phase on AlmaLinux: PGDG repository and postgresql16-server, postgresql-16.service, the SELinux mount context, conf.d included; then nothing", () => {
  const ctx = contextFor();
  const pc = pcFor(ctx);
  const l = postgresLayout("rhel-like", "16", "/var/lib/pgsql");
  const host = new FakeHost("rhel-like", l);
  const all = converge(pc, host);
  const titles = all.map((c) => c.title);
  assert.equal(titles[0], "add the PGDG repository (PostgreSQL 16)");
  assert.match(all[0]!.commands[0]!.shell, /pgdg-redhat-repo-latest\.noarch\.rpm/);
  assert.equal(titles[1], "install nfs-utils, postgresql16-server");
  assert.ok(titles.includes("create /etc/systemd/system/postgresql-16.service.d/fmc.conf"));
  assert.ok(titles.includes("create the PostgreSQL 16 cluster in /var/lib/pgsql/16/data (on the NFS mount)"));
  assert.ok(titles.includes("include conf.d/ in /var/lib/pgsql/16/data/postgresql.conf"));
  assert.ok(titles.includes("create /var/lib/pgsql/16/data/pg_hba.conf"));
  assert.ok(titles.some((x) => /postgresql-16\.service$/.test(x) && /start/.test(x)));
  assert.match(host.files.get("/etc/systemd/system/var-lib-pgsql.mount")!.content, /context=system_u:object_r:postgresql_db_t:s0/);
  assertNoSecretsOnCommandLines(ctx, all);
  assert.deepEqual(database.plan(pc, ctx.topo.host("postgresql1"), host.facts()), []);
});

test("while the NFS mount is missing nothing on the data is planned and the plan says why PostgreSQL is not running; a foreign source is remounted; no NFS client is reported", () => {
  const ctx = contextFor();
  const pc = pcFor(ctx);
  const hostSpec = ctx.topo.host("postgresql1");
  const l = postgresLayout("debian-like", "15", "/var/lib/pgsql");
  const host = new FakeHost("debian-like", l);
  converge(pc, host);
  // the mount stopped (systemctl stop var-lib-pgsql.mount): BindsTo stopped PostgreSQL too
  host.mounted = false;
  host.units.set(l.unit, { active: "inactive", enabled: "enabled" });
  host.units.set("var-lib-pgsql.mount", { active: "inactive", enabled: "enabled" });
  const plan = database.plan(pc, hostSpec, host.facts());
  assert.deepEqual(plan.map((c) => c.title), [`mount ${NFS_WHAT} at /var/lib/pgsql (var-lib-pgsql.mount)`]);
  assert.match(plan[0]!.notes[0]!, /PostgreSQL does not run without its data: \/var\/lib\/pgsql is not mounted \(var-lib-pgsql\.mount is inactive\), so postgresql@15-main\.service is inactive; it is bound to the mount and refuses to start on the local disk/);
  assert.ok(plan[0]!.refreshesFacts);
  assert.match(plan[0]!.commands[0]!.shell, /timeout 90 systemctl start var-lib-pgsql\.mount/);
  // something else mounted there: remounted, PostgreSQL stopped for it and started again
  host.mounted = true;
  const other = factsOf({ family: "debian-like", installed: host.installed, mounted: "10.9.9.9:/elsewhere", files: host.files, units: host.units, guards: { [ROLES_GUARD]: 0 } });
  const re = database.plan(pc, hostSpec, other);
  assert.match(re[0]!.title, /^remount \/var\/lib\/pgsql from 10\.17\.4\.27/);
  assert.match(re[0]!.commands[0]!.shell, /systemctl stop postgresql@15-main\.service\nsystemctl stop var-lib-pgsql\.mount/);
  // a kernel without NFS (a container): the plan says so, apply stops with the same words
  const none = database.plan(pc, hostSpec, factsOf({ family: "debian-like", nfsKernel: false }));
  assert.equal(none.length, 1);
  assert.match(none[0]!.title, /kernel has no NFS client/);
  assert.match(none[0]!.notes.join(" "), /fmc lab up --vm database/);
  const r = sh(none[0]!.commands[0]!.shell);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /has no NFSv4 client/);
});

test("Debian: the installed version decides; the spec's version when apt has it; a cluster with its data elsewhere is not taken over", () => {
  const ctx = contextFor();
  const pc = pcFor(ctx);
  const hostSpec = ctx.topo.host("postgresql1");
  const withApt16 = database.plan(pc, hostSpec, factsOf({ family: "debian-like", guards: { "database:apt-postgresql-16": 0 } }));
  assert.ok(withApt16.some((c) => c.title === "install nfs-common, postgresql-16"));
  const has15 = database.plan(pc, hostSpec, factsOf({ family: "debian-like", installed: ["postgresql-15", "nfs-common"], mounted: true }));
  assert.ok(has15.some((c) => c.title === "create /etc/systemd/system/postgresql@15-main.service.d/fmc.conf"));
  assert.ok(!has15.some((c) => c.title.startsWith("install")));
  // the package made its own cluster on the local disk before fmc came: refused, with the way out
  const files = new Map([["/etc/postgresql/15/main/postgresql.conf", { content: "data_directory = '/var/lib/postgresql/15/main'\n", mode: 0o644, owner: "postgres", group: "postgres" }]]);
  const foreign = database.plan(pc, hostSpec, factsOf({ family: "debian-like", installed: true, mounted: true, files }));
  const stop = foreign.at(-1)!;
  assert.match(stop.title, /keeps its data in \/var\/lib\/postgresql\/15\/main, not in \/var\/lib\/pgsql\/15\/main/);
  assert.match(stop.notes.join(" "), /pg_dropcluster --stop 15 main/);
  assert.ok(!foreign.some((c) => /cluster in|pg_hba|roles/.test(c.title)));
});

// ---- backups

test("retention keeps the newest N of each database, by the time in their names", () => {
  const names = ["app-20261101T000000Z.dump", "app-20261103T000000Z.dump", "app-20261102T000000Z.dump", "app-20261103T000000Z.dump.sha256", "other-20260101T000000Z.dump", "app-notes.txt", "app-20261104T000000Z.dump"];
  assert.deepEqual(expired(names, "app", 2), ["app-20261102T000000Z.dump", "app-20261101T000000Z.dump"]);
  assert.deepEqual(expired(names, "app", 4), []);
  assert.deepEqual(expired(names, "app", 1), ["app-20261103T000000Z.dump", "app-20261102T000000Z.dump", "app-20261101T000000Z.dump"]);
  assert.deepEqual(expired(names, "other", 1), []);
  assert.throws(() => expired(names, "app", 0), /at least 1/);
  assert.deepEqual(parseBackupName("app_2-20261104T101112Z.dump"), { db: "app_2", stamp: "20261104T101112Z" });
  assert.equal(parseBackupName("app-2026.dump"), undefined);
});

/** Answers streams from a script of outputs; records every command. */
class FakeTransport implements Transport {
  readonly log: Command[] = [];
  constructor(
    readonly host: string,
    private readonly reply: (c: Command, stdin: Buffer) => { code: number; stdout?: Buffer; stderr?: string },
  ) {}
  async exec(c: Command): Promise<ExecResult> {
    this.log.push(c);
    return { code: 0, stdout: "", stderr: "" };
  }
  async stream(c: Command, _step: string, io: StreamIo): Promise<{ code: number; stderr: string }> {
    this.log.push(c);
    const chunks: Buffer[] = [];
    if (io.stdin) for await (const ch of io.stdin) chunks.push(Buffer.from(ch as Buffer));
    const r = this.reply(c, Buffer.concat(chunks));
    if (io.stdout) {
      const out = io.stdout;
      await new Promise<void>((res) => out.end(r.stdout ?? Buffer.alloc(0), () => res()));
    }
    return { code: r.code, stderr: r.stderr ?? "" };
  }
  close(): void {}
}

const LAYOUT = postgresLayout("debian-like", "15", "/var/lib/pgsql");

test("backup: the dump lands beside its .sha256 (sha256sum -c agrees), old ones go; a failed dump leaves nothing; a damaged or unchecked file is never restored", async (t) => {
  requireTool("sha256sum");
  const dir = tempDir(t);
  const store = localStore(dir);
  const data = Buffer.from("PGDMP fake custom-format dump\n".repeat(5000));
  const ok = new FakeTransport("postgresql1", () => ({ code: 0, stdout: data }));
  for (const [i, day] of ["01", "02", "03"].entries()) {
    const r = await backupDatabase({ transport: ok, layout: LAYOUT, db: "app", store, keep: 2, now: new Date(`2026-11-${day}T10:00:0${i}Z`), timeoutMs: 1000 });
    assert.equal(r.bytes, data.length);
  }
  assert.deepEqual(readdirSync(dir).sort(), [".gitignore", "app-20261102T100001Z.dump", "app-20261102T100001Z.dump.sha256", "app-20261103T100002Z.dump", "app-20261103T100002Z.dump.sha256"]);
  const check = sh(`cd ${quote(dir)} && sha256sum -c app-20261103T100002Z.dump.sha256`);
  assert.equal(check.status, 0, check.stderr);
  assert.match(ok.log[0]!.shell, /runuser -u postgres -- \/usr\/lib\/postgresql\/15\/bin\/pg_dump --format=custom -h \/run\/postgresql -p 5432 --dbname=app$/);
  // pg_dump fails: no file, no partial file, retention untouched
  const bad = new FakeTransport("postgresql1", () => ({ code: 1, stdout: data.subarray(0, 100), stderr: "pg_dump: error: connection failed" }));
  await assert.rejects(backupDatabase({ transport: bad, layout: LAYOUT, db: "app", store, keep: 1, now: new Date("2026-11-04T00:00:00Z"), timeoutMs: 1000 }), /pg_dump app failed \(exit 1\): pg_dump: error: connection failed/);
  assert.equal(readdirSync(dir).length, 5);
  // restore: one flipped byte is refused before the host hears anything; so is a file without its .sha256
  const name = "app-20261103T100002Z.dump";
  const restoreTo = new FakeTransport("postgresql1", () => ({ code: 0 }));
  const file = join(dir, name);
  const good = readFileSync(file);
  const flipped = Buffer.from(good);
  flipped[1000]! ^= 1;
  writeFileSync(file, flipped);
  let asked = 0;
  const confirm = async () => (asked++, true);
  await assert.rejects(restoreDatabase({ transport: restoreTo, layout: LAYOUT, db: "app", store, name, timeoutMs: 1000, confirm }), (e: Error & { code?: string }) => e.code === "BACKUP_CHECKSUM" && /does not match its checksum/.test(e.message));
  writeFileSync(file, good);
  writeFileSync(join(dir, "app-20261109T000000Z.dump"), good);
  await assert.rejects(verifiedChecksum(store, "app-20261109T000000Z.dump"), /has no app-20261109T000000Z\.dump\.sha256 beside it/);
  assert.equal(restoreTo.log.length, 0);
  assert.equal(asked, 0, "nothing is asked about a file that is refused");
  // declined: nothing reaches the host
  await assert.rejects(restoreDatabase({ transport: restoreTo, layout: LAYOUT, db: "app", store, name, timeoutMs: 1000, confirm: async () => false }), /nothing was restored/);
  assert.equal(restoreTo.log.length, 0);
  // accepted: the whole file goes to pg_restore --clean --if-exists on stdin
  let received: Buffer = Buffer.alloc(0);
  const taker = new FakeTransport("postgresql1", (_c, stdin) => ((received = stdin), { code: 0 }));
  await restoreDatabase({ transport: taker, layout: LAYOUT, db: "app", store, name, timeoutMs: 1000, confirm });
  assert.ok(received.equals(good));
  assert.match(taker.log[0]!.shell, /pg_restore --clean --if-exists --single-transaction --exit-on-error -h \/run\/postgresql -p 5432 --dbname=app$/);
  assert.equal(checksumLine("ab".repeat(32), name), `${"ab".repeat(32)}  ${name}\n`);
});

// ---- a real PostgreSQL


test("a real PostgreSQL 15: the roles SQL makes roles and databases, its check says t, the SCRAM verifiers take the passwords; backup, drop a table, restore brings the rows back", async (t) => {
  requireTool("runuser");
  const bin = "/usr/lib/postgresql/15/bin";
  if (!existsSync(`${bin}/postgres`)) throw new Error("PostgreSQL 15 is not installed; apt-get install postgresql-15");
  const ctx = contextFor(SEED_YAML.replace("databases: [app]", "databases: [app, user]"));
  const dir = tempDir(t, "fmchelp-db-");
  chmodSync(dir, 0o755);
  const data = join(dir, "data");
  const sock = join(dir, "sock");
  mkdirSync(sock);
  sh(`chown postgres:postgres ${quote(dir)} ${quote(sock)}`);
  const as = (cmd: string, input?: string) => sh(`cd / && runuser -u postgres -- ${cmd}`, input);
  const init = as(`${bin}/initdb -D ${quote(data)} --locale=C.UTF-8 --encoding=UTF8 --data-checksums --auth-local=peer --auth-host=scram-sha-256`);
  assert.equal(init.status, 0, init.stderr);
  // only the socket, no TCP: nothing leaves this test; password logins over the socket for the check
  writeFileSync(join(data, "pg_hba.conf"), "local all postgres peer\nlocal all all scram-sha-256\n");
  const port = 54000 + (process.pid % 1000);
  const start = as(`${bin}/pg_ctl -D ${quote(data)} -w -l ${quote(join(dir, "log"))} -o ${quote(`-c listen_addresses='' -c unix_socket_directories=${sock} -p ${port}`)} start`);
  assert.equal(start.status, 0, start.stderr + readFileSync(join(dir, "log"), "utf8"));
  // stopped by its process id: the temporary directory may be gone first
  const postmaster = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
  t.after(() => {
    try {
      process.kill(postmaster, "SIGINT");
    } catch {
      // already gone
    }
  });
  const psql = (sql: string, db = "postgres") => as(`${bin}/psql -X -A -t -q -v ON_ERROR_STOP=1 -h ${sock} -p ${port} -d ${db}`, sql);
  assert.equal(psql(rolesCheckSql(ctx)).stdout.trim(), "f");
  for (let i = 0; i < 2; i++) {
    const r = psql(rolesSql(ctx));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(psql(rolesCheckSql(ctx)).stdout.trim(), "t", `check after run ${i + 1}`);
  }
  assert.equal(psql(`SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database WHERE datname IN ('app','user') ORDER BY 1`).stdout, "app:app\nuser:user\n");
  // the stored verifier is fmc's, and it takes the password from the secret store (and nothing else)
  const login = (role: string, password: string, db: string) => spawnSync(`${bin}/psql`, ["-X", "-A", "-t", "-h", sock, "-p", String(port), "-U", role, "-d", db, "-c", "select current_user"], { encoding: "utf8", env: { ...process.env, PGPASSWORD: password } });
  assert.equal(login("app", ctx.secrets.get("postgres-owner/app"), "app").stdout, "app\n");
  assert.match(login("app", "wrong-password-123", "app").stderr, /password authentication failed/);
  assert.match(login("app", ctx.secrets.get("postgres-owner/app"), "user").stderr, /permission denied for database "user"/);
  // the superuser's password too (its socket logins are peer, so for this check only: passwords for everyone)
  writeFileSync(join(data, "pg_hba.conf"), "local all all scram-sha-256\n");
  assert.equal(as(`${bin}/pg_ctl -D ${quote(data)} reload`).status, 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(login("postgres", ctx.secrets.get("postgres-superuser"), "postgres").stdout, "postgres\n");
  writeFileSync(join(data, "pg_hba.conf"), "local all postgres peer\nlocal all all scram-sha-256\n");
  assert.equal(as(`${bin}/pg_ctl -D ${quote(data)} reload`).status, 0);
  await new Promise((r) => setTimeout(r, 300));
  // someone changes a password: the check notices
  psql(`ALTER ROLE app PASSWORD 'changed-by-hand'`);
  assert.equal(psql(rolesCheckSql(ctx)).stdout.trim(), "f");
  psql(rolesSql(ctx));
  // backup through the phase's commands, drop a table, restore
  psql("CREATE TABLE items (id int primary key, name text); INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 1000) g; ALTER TABLE items OWNER TO app;", "app");
  const local = new BashTransport("local", (s) => s.replaceAll(`-h /run/postgresql -p 5432`, `-h ${sock} -p ${port}`));
  const store = localStore(join(dir, "backups"));
  const b = await backupDatabase({ transport: local, layout: LAYOUT, db: "app", store, keep: 3, timeoutMs: 60_000 });
  assert.ok(b.bytes > 1000);
  assert.equal(sh(`cd ${quote(join(dir, "backups"))} && sha256sum -c --status ${b.name}.sha256`).status, 0);
  assert.match(sh(`${bin}/pg_restore -l ${quote(join(dir, "backups", b.name))}`).stdout, /TABLE public items app/);
  psql("DROP TABLE items; CREATE TABLE stray (x int);", "app");
  await restoreDatabase({ transport: local, layout: LAYOUT, db: "app", store, name: b.name, timeoutMs: 60_000, confirm: async () => true });
  assert.equal(psql("SELECT count(*) || ' ' || max(name) FROM items", "app").stdout, "1000 row 999\n");
  assert.equal(psql("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'items'", "app").stdout, "app\n");
  // a corrupted copy is refused, the database is untouched
  const file = join(dir, "backups", b.name);
  const good = readFileSync(file);
  const bytes = Buffer.from(good);
  bytes[bytes.length - 10]! ^= 0xff;
  writeFileSync(file, bytes);
  await assert.rejects(restoreDatabase({ transport: local, layout: LAYOUT, db: "app", store, name: b.name, timeoutMs: 60_000, confirm: async () => true }), /does not match its checksum/);
  assert.equal(psql("SELECT count(*) FROM items", "app").stdout, "1000\n");
  // checked, then replaced by another good dump while the question was asked: pg_restore
  // never gets its end, so its one transaction changes nothing
  writeFileSync(file, good);
  psql("DELETE FROM items WHERE id > 5", "app");
  const other = await backupDatabase({ transport: local, layout: LAYOUT, db: "app", store, keep: 3, timeoutMs: 60_000, now: new Date(Date.now() + 1000) });
  psql("DELETE FROM items WHERE id > 3", "app");
  const swap = async () => (writeFileSync(file, readFileSync(join(dir, "backups", other.name))), true);
  await assert.rejects(restoreDatabase({ transport: local, layout: LAYOUT, db: "app", store, name: b.name, timeoutMs: 60_000, confirm: swap }), (e: Error & { code?: string }) => e.code === "RESTORE_FAILED" && /changed since it was checked/.test(e.message));
  assert.equal(psql("SELECT count(*) FROM items", "app").stdout, "3\n", "the database is as it was before the restore");
});

// ---- the SSH transport's streams, through a real SSH connection (ssh2's server runs bash here)

test("SshTransport.stream: 48 MiB out and back over SSH with backpressure, exit codes and error output", async (t) => {
  const ssh2 = (await import("ssh2")).default;
  const { SshTransport } = await import("../../src/hosts/ssh.js");
  const { createHash, randomBytes } = await import("node:crypto");
  const { PassThrough, Readable } = await import("node:stream");
  const dir = tempDir(t);
  const hostKey = ssh2.utils.generateKeyPairSync("ed25519");
  const userKey = ssh2.utils.generateKeyPairSync("ed25519");
  const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on("authentication", (a) => (a.method === "publickey" ? a.accept() : a.reject(["publickey"])));
    client.on("error", () => undefined);
    client.on("ready", () =>
      client.on("session", (acceptSession) => {
        const session = acceptSession();
        session.on("exec", (accept, _reject, info) => {
          const ch = accept();
          const p = spawn("bash", ["-c", info.command], { stdio: ["pipe", "pipe", "pipe"] });
          // a command that exits early closes its input: what is still sent goes nowhere, as with sshd
          p.stdin.on("error", () => undefined);
          ch.pipe(p.stdin);
          p.stdout.pipe(ch, { end: false });
          p.stderr.pipe(ch.stderr, { end: false });
          p.on("close", (code) => {
            ch.exit(code ?? 1);
            ch.end();
          });
        });
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;
  const transport = await SshTransport.connect({ name: "streamhost", address: "127.0.0.1", port, user: "root" }, { privateKeys: [userKey.private], knownHostsFile: join(dir, "known_hosts"), acceptNew: true, commandTimeoutMs: 60_000 });
  t.after(() => transport.close());
  const size = 48 * 1024 * 1024;
  const data = randomBytes(size);
  const sha = createHash("sha256").update(data).digest("hex");
  // upload: the remote side hashes what it got
  const t0 = performance.now();
  const up = await transport.stream(quoteScript("sha256sum | cut -c1-64 >&2"), "upload", { stdin: Readable.from([data.subarray(0, size / 2), data.subarray(size / 2)]) });
  const upMs = performance.now() - t0;
  assert.deepEqual(up, { code: 0, stderr: `${sha}\n` });
  // download: a slow reader holds the sender back (backpressure), and gets every byte
  const h = createHash("sha256");
  let got = 0;
  const slow = new PassThrough({ highWaterMark: 64 * 1024 });
  slow.on("data", (d: Buffer) => {
    h.update(d);
    got += d.length;
  });
  const t1 = performance.now();
  const down = await transport.stream(quoteScript(`head -c ${size} /dev/zero`), "download", { stdout: slow });
  const downMs = performance.now() - t1;
  assert.equal(down.code, 0);
  assert.equal(got, size);
  assert.equal(h.digest("hex"), createHash("sha256").update(Buffer.alloc(size)).digest("hex"));
  // a failing command: its exit code and error output, even while its input is still being sent
  const fail = await transport.stream(quoteScript("head -c 10 >/dev/null; echo refused >&2; exit 3"), "fail", { stdin: Readable.from([data]) });
  assert.deepEqual(fail, { code: 3, stderr: "refused\n" });
  // exec still works on the same connection
  assert.equal((await transport.exec(quoteScript("echo ok"), "exec")).stdout, "ok\n");
  t.diagnostic(`48 MiB over SSH (ssh2 both ends, loopback): upload ${(size / 1048576 / (upMs / 1000)).toFixed(0)} MiB/s, download ${(size / 1048576 / (downMs / 1000)).toFixed(0)} MiB/s`);
});

function quoteScript(body: string): Command {
  return { shell: body, display: body };
}

test("backups on the storage host: written through its shell, checked there, kept by retention, refused there when damaged, restored from there", async (t) => {
  const dir = join(tempDir(t), "srv", "backups");
  const storage = new BashTransport("local", (x) => x);
  const store = remoteStore(storage, dir, 10_000);
  const data = Buffer.from("PGDMP remote\n".repeat(10_000));
  const db = new FakeTransport("postgresql1", () => ({ code: 0, stdout: data }));
  for (const day of ["01", "02"]) await backupDatabase({ transport: db, layout: LAYOUT, db: "app", store, keep: 1, now: new Date(`2026-11-${day}T00:00:00Z`), timeoutMs: 10_000 });
  assert.deepEqual(readdirSync(dir).sort(), ["app-20261102T000000Z.dump", "app-20261102T000000Z.dump.sha256"]);
  assert.equal(sh(`cd ${quote(dir)} && sha256sum -c --status app-20261102T000000Z.dump.sha256`).status, 0);
  let received: Buffer = Buffer.alloc(0);
  const taker = new FakeTransport("postgresql1", (_c, stdin) => ((received = stdin), { code: 0 }));
  await restoreDatabase({ transport: taker, layout: LAYOUT, db: "app", store, name: "app-20261102T000000Z.dump", timeoutMs: 10_000, confirm: async () => true });
  assert.ok(received.equals(data));
  writeFileSync(join(dir, "app-20261102T000000Z.dump"), Buffer.concat([data, Buffer.from("x")]));
  await assert.rejects(restoreDatabase({ transport: taker, layout: LAYOUT, db: "app", store, name: "app-20261102T000000Z.dump", timeoutMs: 10_000, confirm: async () => true }), /does not match its checksum/);
  assert.equal(taker.log.length, 1, "only the good restore reached the database host");
});
