// Tests written against code mutations that survived the unit suite: each one fails with
// its mutation in place and passes on the real code.
//  1. firewall1's timed revert: a confirmation disarms the revert (removes its `armed`
//     marker), so a revert that fires after it restores nothing (real kernel, throwaway
//     network, mount and PID namespaces).
//  2. LVM: a shrink of exactly one or two extents (4 MiB each) is refused.
//  3. database: a filesystem at the data root that is not the NFS export (a local ext4, an
//     sshfs mount naming the export) is not taken for the NFS mount: the plan stops, naming it.
//  4. backups: a file that lands different from what was streamed is refused and removed
//     (PostgreSQL into a local store and into the storage host's store, an etcd snapshot).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, symlinkSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { finished } from "node:stream/promises";
import { contextFor, inNetns, LVM_FIXTURE_SPEC, requireTool, ROOT, tempDir } from "../helpers.js";
import { BashTransport } from "../shell-transport.js";
import { FmcError } from "../../src/errors.js";
import type { Command } from "../../src/hosts/command.js";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { postgresLayout } from "../../src/hosts/os.js";
import type { ExecResult, StreamIo, Transport } from "../../src/hosts/transport.js";
import { firewallNftables } from "../../src/render/firewall.js";
import { armCommand, cancelCommand, describeRevert, FIREWALL_REVERT, FIREWALL_RULES, loadCommand, revertStatusCommand } from "../../src/phases/firewall.js";
import { lvmChanges } from "../../src/ops/lvm.js";
import { database, NFS_CLIENT_GUARD, ROLES_GUARD } from "../../src/phases/database.js";
import { databaseMountUnit, nfsSource } from "../../src/render/database.js";
import { unitPath } from "../../src/ops/unit.js";
import { localStore, remoteStore, stamp, type BackupStore } from "../../src/local/backup-store.js";
import { backupDatabase } from "../../src/runbooks/postgres-backup.js";
import { backupEtcdSnapshot } from "../../src/runbooks/etcd-backup.js";
import { K3S_SNAPSHOT_DIR } from "../../src/k3s/etcd.js";

// ---- 1. firewall1: a confirmation disarms the revert ---------------------------------

test("firewall1: a confirmed load is kept: the confirmation removes the armed marker, the host reports the table in sync, and a revert firing after it restores nothing (real kernel, throwaway namespaces)", (t) => {
  requireTool("nft");
  requireTool("unshare");
  const dir = tempDir(t);
  const state = FIREWALL_REVERT.spec.stateDir;
  const ctx = contextFor(undefined, "firewall");
  // a long timeout: the revert's own timer never fires during the test; its script is run by hand
  const files: Record<string, string> = {
    arm: armCommand(600).shell,
    load: loadCommand().shell,
    cancel: cancelCommand().shell,
    status: revertStatusCommand.shell,
    insync: FIREWALL_REVERT.inSyncTest,
    rules: firewallNftables(ctx),
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  // private /etc, /run (no systemd: the detached-sleep timer) and /var/lib; a PID namespace,
  // so the detached sleep dies with the scenario whatever happens
  const scenario = `
set -u
D=${dir}
S=${state}
mount -t tmpfs none /run && mount -t tmpfs none /var/lib && mount -t tmpfs none /etc || exit 9
mkdir -p /etc/fmc && cp $D/rules ${FIREWALL_RULES}
bash $D/arm && bash $D/load || exit 10
[ -e $S/armed ] && [ -e $S/revert.sh ] || exit 11
bash $D/cancel || exit 12
echo "@status"
bash $D/status
bash $D/insync; echo "@insync $?"
# the revert's script as its timer runs it, had it fired right after the confirmation
/bin/sh $S/revert.sh; echo "@revert-exit $?"
nft list table inet fmc_firewall > $D/after.txt; echo "@listed $?"
[ -e $S/reverted ]; echo "@reverted-file $?"
`;
  writeFileSync(join(dir, "scenario"), scenario);
  inNetns((ns) => {
    const r = spawnSync("ip", ["netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "bash", join(dir, "scenario")], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, `scenario step ${r.status}: ${r.stderr}`);
    const field = (name: string) => new RegExp(`^@${name} (\\d+)$`, "m").exec(r.stdout)?.[1];
    const status = r.stdout.split("@status\n")[1]!.split("@insync")[0]!;
    assert.equal(describeRevert(status).armedSince, undefined, `no revert is armed after the confirmation:\n${status}`);
    assert.equal(field("insync"), "0", "the host's in-sync test holds: a second plan has nothing to load");
    assert.equal(field("revert-exit"), "0");
    assert.equal(field("listed"), "0", "the confirmed table is still loaded after the late revert");
    assert.match(readFileSync(join(dir, "after.txt"), "utf8"), /table inet fmc_firewall/);
    assert.equal(field("reverted-file"), "1", "the late revert did not run: it records nothing");
  });
});

// ---- 2. LVM: a shrink of one or two extents is refused -------------------------------

/** The captured LVM state with the volumes formatted and mounted (data/postgres_lv is exactly 1 GiB). */
function lvmFacts(): HostFacts {
  const captured = readFileSync(join(ROOT, "test/fixtures/lvm/formatted-mounted.txt"), "utf8").split("\n").filter((l) => !l.startsWith("#")).join("\n");
  return parseFacts("storage1", ["@os", "ID=debian", captured, "@end"].join("\n"));
}
const lvmSite = { host: "storage1", phase: "storage", mask: (s: string) => s };
const postgresLvOf = (size: string) => ({ ...LVM_FIXTURE_SPEC, volumes: LVM_FIXTURE_SPEC.volumes.map((v) => (v.name === "postgres_lv" ? { ...v, size } : v)) });

test("LVM: shrinking a 1 GiB volume by exactly one extent (1020M) or two (1016M) is refused; less than one extent (1021M..1023M) is no change", () => {
  const f = lvmFacts();
  assert.equal(f.lvm.lvs.get("data/postgres_lv")?.size, 1024 ** 3, "the fixture's volume is exactly 1 GiB");
  for (const size of ["1020M", "1016M"]) {
    assert.throws(
      () => lvmChanges(f, postgresLvOf(size), lvmSite),
      (e: unknown) => e instanceof FmcError && e.code === "SHRINK_REFUSED" && e.message.includes(`data/postgres_lv is 1 GiB, the spec asks for ${size}`),
      `${size}: a shrink`,
    );
  }
  // LVM rounds a size up to whole extents: these are the volume's own size
  for (const size of ["1021M", "1023M", "1024M", "1G"]) assert.deepEqual(lvmChanges(f, postgresLvOf(size), lvmSite), [], size);
});

// ---- 3. database: only the NFS export counts as the NFS mount ---------------------------

const dbCtx = contextFor();
const dbPc = { render: dbCtx, mask: (x: string) => dbCtx.secrets.mask(x), loginUser: () => "root" };
const NFS = nfsSource(dbCtx)!;
const DATA_ROOT = dbCtx.spec.database!.dataDir;
const MOUNT_UNIT = "var-lib-pgsql.mount";

/** postgresql1 on Debian: packages installed, the mount unit written and enabled, no cluster yet, and `mounted` at the data root. */
function dbFacts(mounted: string | undefined): HostFacts {
  const unit = databaseMountUnit(dbCtx, "debian-like")!;
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const text = [
    "@os", "ID=debian", 'VERSION_ID="12"',
    "@hostname", "postgresql1",
    "@addr", "eth0 10.17.3.14/24",
    "@units", `Id=${MOUNT_UNIT}`, "ActiveState=active", "UnitFileState=enabled", "",
    "@packages", "postgresql-15 install ok installed", "nfs-common install ok installed",
    "@files", `${unitPath(MOUNT_UNIT)} 644 root root ${b64(unit.content)}`,
    "@guard", `${NFS_CLIENT_GUARD} 0`, `${ROLES_GUARD} 1`,
    "@mounts", "/dev/vda1 / ext4 rw,relatime 0 0", ...(mounted ? [mounted] : []),
    "@end",
  ].join("\n");
  return parseFacts("postgresql1", `${text}\n`);
}
const dbPlan = (mounted: string | undefined) => database.plan(dbPc, dbCtx.topo.host("postgresql1"), dbFacts(mounted));
/** A change that puts the export at the data root: a mount or a remount from it. */
const mountsExport = (title: string) => title === `mount ${NFS.what} at ${DATA_ROOT} (${MOUNT_UNIT})` || title === `remount ${DATA_ROOT} from ${NFS.what}`;
const onTheData = (title: string) => /PostgreSQL \d+ cluster|pg_hba\.conf|conf\.d|postgresql@\d+-main\.service$|roles and databases/.test(title);

test("database: the genuine NFS mount at the data root is taken (the cluster is planned on it): the control for the two tests below", () => {
  assert.equal(MOUNT_UNIT, `${DATA_ROOT.slice(1).replaceAll("/", "-")}.mount`);
  const titles = dbPlan(`${NFS.what} ${DATA_ROOT} nfs4 rw,relatime,vers=4.2,hard 0 0`).map((c) => c.title);
  assert.ok(!titles.some(mountsExport), titles.join("\n"));
  assert.ok(titles.includes("create the PostgreSQL 15 cluster in /var/lib/pgsql/15/main (on the NFS mount)"), titles.join("\n"));
});

for (const [what, line] of [
  ["a local ext4 (/dev/vdb1)", `/dev/vdb1 ${DATA_ROOT} ext4 rw,relatime 0 0`],
  ["an sshfs mount whose source reads as the export", `${NFS.what} ${DATA_ROOT} fuse.sshfs rw,nosuid,nodev,relatime,user_id=0,group_id=0 0 0`],
] as const) {
  test(`database: ${what} at the data root is not taken for the NFS mount: the plan stops there, naming it, and plans nothing on the data`, () => {
    const plan = dbPlan(line);
    const titles = plan.map((c) => c.title);
    const device = line.split(" ")[0]!;
    const i = titles.findIndex((t) => t.includes(`has ${device} (`) && t.includes("mounted, not"));
    assert.ok(i >= 0, `the foreign filesystem is named:\n${titles.join("\n")}`);
    // it stops apply (exit 1) and says how to proceed; fmc never unmounts what it did not mount
    assert.match(plan[i]!.commands[0]!.shell, /exit 1$/);
    assert.ok(!plan.slice(0, i).some((c) => c.commands.some((x) => /\bumount\b|systemctl stop/.test(x.shell))), "nothing is unmounted");
    assert.match(plan[i]!.notes.join("\n"), /does not unmount a filesystem it did not mount/);
    assert.deepEqual(titles.slice(i + 1), [], "nothing is planned after it");
    assert.deepEqual(titles.filter(onTheData), [], "no cluster, configuration or service on a filesystem that is not the export");
  });
}

// ---- 4. backups: what landed is compared with what was sent -------------------------------

const LAYOUT = postgresLayout("debian-like", "15", "/var/lib/pgsql");
const NOW = new Date("2026-11-25T17:45:10Z");
const DUMP = Buffer.from("PGDMP fake custom-format dump\n".repeat(4000));
const refusedAsDifferent = (what: string) => (e: unknown) => {
  assert.ok(e instanceof FmcError, `an FmcError, not ${String(e)}`);
  assert.equal(e.code, "BACKUP_FAILED", e.message);
  assert.match(e.message, new RegExp(`does not hold what ${what} sent \\(SHA-256 [0-9a-f]{64} instead of [0-9a-f]{64}\\); it was removed`));
  return true;
};

/** A host whose streamed commands print `out` (pg_dump, cat of a snapshot); exec answers by `reply`. */
class PrintingHost implements Transport {
  readonly log: Command[] = [];
  constructor(
    readonly host: string,
    private readonly out: Buffer,
    private readonly reply: (c: Command) => ExecResult = () => ({ code: 0, stdout: "", stderr: "" }),
  ) {}
  async exec(c: Command): Promise<ExecResult> {
    this.log.push(c);
    return this.reply(c);
  }
  async stream(c: Command, _step: string, io: StreamIo): Promise<{ code: number; stderr: string }> {
    this.log.push(c);
    const out = io.stdout!;
    await new Promise<void>((res) => out.end(this.out, () => res()));
    return { code: 0, stderr: "" };
  }
  close(): void {}
}


const files = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f !== ".gitignore").sort() : []);

test("backup postgres: a dump that lands with one byte changed (a local disk that does not keep what it was given) is refused and removed, with no .sha256", async (t) => {
  const dir = tempDir(t);
  const inner = localStore(dir);
  // the disk flips a byte of the file after it was written, before it is put in place
  const flipping: BackupStore = {
    ...inner,
    async create(name) {
      const target = await inner.create(name);
      return {
        ...target,
        async commit() {
          await finished(target.stream);
          const partial = join(dir, `${name}.partial`);
          const landed = readFileSync(partial);
          landed[1000]! ^= 1;
          writeFileSync(partial, landed);
          return target.commit();
        },
      };
    },
  };
  const name = `app-${stamp(NOW)}.dump`;
  await assert.rejects(backupDatabase({ transport: new PrintingHost("postgresql1", DUMP), layout: LAYOUT, db: "app", store: flipping, keep: 3, now: NOW, timeoutMs: 10_000 }), refusedAsDifferent("pg_dump app"));
  assert.deepEqual(files(dir), [], `${name} and ${name}.sha256 are not kept`);
  // the control: the same store without the flip keeps the dump and its .sha256
  await backupDatabase({ transport: new PrintingHost("postgresql1", DUMP), layout: LAYOUT, db: "app", store: inner, keep: 3, now: NOW, timeoutMs: 10_000 });
  assert.deepEqual(files(dir), [name, `${name}.sha256`]);
  assert.ok(readFileSync(join(dir, name)).equals(DUMP));
});

test("backup postgres to the storage host: a dump that lands one byte short there is refused and removed, with no .sha256", async (t) => {
  requireTool("sha256sum");
  const dir = join(tempDir(t), "backups");
  const name = `app-${stamp(NOW)}.dump`;
  // the storage host's write keeps all but the last byte
  const short = new BashTransport("storage1", (s) => s.replace(/\bcat > /, "head -c -1 > "));
  await assert.rejects(backupDatabase({ transport: new PrintingHost("postgresql1", DUMP), layout: LAYOUT, db: "app", store: remoteStore(short, dir, 10_000), keep: 3, now: NOW, timeoutMs: 10_000 }), refusedAsDifferent("pg_dump app"));
  assert.deepEqual(files(dir), [], `${name} and ${name}.sha256 are not kept`);
  // the control: the same host writing everything keeps it
  await backupDatabase({ transport: new PrintingHost("postgresql1", DUMP), layout: LAYOUT, db: "app", store: remoteStore(new BashTransport("storage1", (s) => s), dir, 10_000), keep: 3, now: NOW, timeoutMs: 10_000 });
  assert.deepEqual(files(dir), [name, `${name}.sha256`]);
  assert.ok(readFileSync(join(dir, name)).equals(DUMP));
});

test("backup etcd: a snapshot copy that lands different from what the server sent (written into /dev/null) is refused and removed, with no .sha256", async (t) => {
  const snapshot = Buffer.from("etcd snapshot bytes\n".repeat(1000));
  const file = `fmc-${stamp(NOW).toLowerCase()}-master1-1795626000`;
  const server = () => new PrintingHost("master1", snapshot, (c) => ({ code: 0, stdout: c.display.startsWith("the file k3s wrote") ? `${file}\n` : "", stderr: "" }));
  const dir = join(tempDir(t), "etcd");
  mkdirSync(dir);
  // the file being written is a link to /dev/null: a disk that keeps nothing of it
  symlinkSync("/dev/null", join(dir, `${file}.partial`));
  const backup = () => backupEtcdSnapshot({ servers: ["master1"], transports: new Map([["master1", server()]]), unreachable: new Map(), dir, timeoutMs: 10_000, now: NOW });
  await assert.rejects(backup(), refusedAsDifferent(`copy of ${K3S_SNAPSHOT_DIR}/${file}`));
  assert.deepEqual(files(dir), [], `${file} and ${file}.sha256 are not kept`);
  // the control: without the link the snapshot lands whole
  const r = await backup();
  assert.deepEqual(files(dir), [file, `${file}.sha256`]);
  assert.ok(readFileSync(r.path).equals(snapshot));
});
