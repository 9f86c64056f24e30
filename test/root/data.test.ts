// The data layer on real kernels (issue 10): storage1 (Flatcar: LVM on its data disk, kernel
// NFS) and postgresql1 (Debian: PostgreSQL with its data on storage1's export) are lab VMs
// booted from their rendered Ignition and cloud-init files (issue 20); worker1, a
// container, writes rows over the network while PostgreSQL, the NFS server and both VMs
// are restarted and rebooted. Every row whose commit psql reported must still be there,
// and PostgreSQL must serve again by itself. Needs root; one lab for the whole file.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clearStaleLab, fmc, ROOT, sleep, until } from "../helpers.js";
import { labExec, labReboot } from "../../src/lab/lab.js";

let dir = "";
const run = (...args: string[]) => fmc([...args], dir);
const on = (host: string, args: string[], timeoutMs = 60_000) => labExec(host, args, { timeoutMs });
const sh = (host: string, body: string, timeoutMs = 60_000) => on(host, ["sh", "-c", body], timeoutMs);
const qemus = () => spawnSync("pgrep", ["-f", "qemu-system-x86_64 -name fmclab-"], { encoding: "utf8" }).stdout.trim();

// the fixture's addresses and names (test/fixtures/lab-data.yaml; Debian 12 has PostgreSQL 15)
const PG = "10.33.3.14";
const STORAGE = "10.33.4.27";
const PG_UNIT = "postgresql@15-main.service";
const MOUNT_UNIT = "var-lib-pgsql.mount";
const psql = (sql: string) => on("worker1", ["psql", "-h", PG, "-U", "app", "-d", "app", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], 60_000);

/** Inserts one row at a time from worker1; a row's id is logged only after psql reported its commit. */
const WRITER = `#!/bin/bash
n=0
while :; do
  n=$((n+1))
  if id=$(psql -h ${PG} -U app -d app -XAtq -v ON_ERROR_STOP=1 -c "insert into rows_written(v) values ('w$n') returning id" 2>/dev/null); then
    echo "$(date +%s.%N) $id" >> /root/committed
  fi
  sleep 0.05
done
`;

const PREFIX = join(tmpdir(), "fmc-data-e2e-");
let ours = false;
const recoveries: string[] = [];

before(async () => {
  dir = mkdtempSync(PREFIX);
  copyFileSync(join(ROOT, "test/fixtures/lab-data.yaml"), join(dir, "cluster.yaml"));
  clearStaleLab(dir);
  const up = run("lab", "up", "--only", "storage,database,k3s-agent");
  assert.equal(up.status, 0, up.stderr);
  ours = true;
  assert.match(up.stderr, /storage1: VM fmclab-storage1/);
  assert.match(up.stderr, /postgresql1: VM fmclab-postgresql1/);
  // each boots from its rendered first-boot files, as in the seed: storage1 (Flatcar) from its
  // Ignition config through fw_cfg, run by the real Ignition at first boot; postgresql1
  // (Debian) from its NoCloud seed (a read-only disk), run by the real cloud-init, which
  // makes its SSH host keys (lab up reads them from the console)
  assert.match(up.stderr, /^lab: storage1: VM fmclab-storage1 .*first boot: its Ignition config through fw_cfg/m);
  assert.match(up.stderr, /^lab: storage1: Ignition \(real, every stage, config through fw_cfg\) provisioned it at first boot/m);
  assert.match(up.stderr, /^lab: postgresql1: VM fmclab-postgresql1 .*first boot: its NoCloud seed /m);
  assert.match(up.stderr, /^lab: postgresql1: SSH host key from its console/m);
  assert.match(up.stderr, /^lab: postgresql1: cloud-init status: done$/m);
  const a = run("apply", "--yes");
  assert.equal(a.status, 0, a.stdout + a.stderr);
  // worker1 is the database's client: psql from the lab's package repository, the app role's password in .pgpass
  assert.equal(on("worker1", ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql-client"], 180_000).status, 0);
  const pw = run("secrets", "show", "postgres-owner/app").stdout.trim();
  assert.ok(pw.length >= 16, "a generated password");
  assert.equal(labExec("worker1", ["sh", "-c", "umask 077; cat > /root/.pgpass"], { input: `${PG}:5432:app:app:${pw}\n` }).status, 0);
});

after(() => {
  const down = ours ? run("lab", "down", "--force") : { status: 0, stderr: "" };
  rmSync(dir, { recursive: true, force: true });
  if (recoveries.length) process.stdout.write(`# recovery times: ${recoveries.join("; ")}\n`);
  assert.equal(down.status, 0, down.stderr);
  assert.equal(qemus(), "", "no QEMU left behind");
});

// The VM tier itself (was vm.test.ts, which booted a lab of its own for this): a host that
// needs a kernel of its own runs as a QEMU VM on the same segment as the containers, with the
// same keys, known_hosts and inventory, so plan and apply don't know the difference.
test("storage1 is a VM with its own kernel, the data disk the rendered Terraform gives it, and modules; a container reaches it; lab exec passes exit codes", () => {
  assert.notEqual(qemus(), "", "storage1 runs in QEMU");
  const kernel = on("storage1", ["uname", "-r"]);
  assert.equal(kernel.status, 0, kernel.stderr);
  assert.notEqual(kernel.stdout.trim(), spawnSync("uname", ["-r"], { encoding: "utf8" }).stdout.trim(), "not this machine's kernel");
  // storage.device /dev/vdb is the fixture's 20 GiB data disk (libvirt_volume.storage1_data in main.tf.json)
  assert.equal(on("storage1", ["lsblk", "-dnbo", "SIZE", "/dev/vdb"]).stdout.trim(), String(20 * 1024 ** 3));
  // what containers can't do: load kernel modules (the NFS server's)
  assert.equal(on("storage1", ["modprobe", "nfsd"]).status, 0);
  assert.match(on("storage1", ["cat", "/proc/filesystems"]).stdout, /\tnfsd$/m);
  assert.equal(labExec("worker1", ["bash", "-c", `echo > /dev/tcp/${STORAGE}/22`], { timeoutMs: 10_000 }).status, 0, "worker1 reaches storage1's sshd");
  assert.equal(run("lab", "exec", "storage1", "--", "sh", "-c", "exit 5").status, 5);
  assert.equal(on("storage1", ["hostname"]).stdout.trim(), "storage1", "its Ignition named the VM");
});

test("apply converged: a second plan has nothing to do and names storage1 as the single point of failure", () => {
  const p = run("plan", "--detailed-exitcode");
  assert.equal(p.status, 0, p.stdout + p.stderr);
  assert.match(p.stdout, /warning PostgreSQL's data \(\/srv\/nfs\/postgresql\).* lives? only on storage1: it is a single point of failure/);
});

test("storage1: the spec's volumes on LVM on /dev/vdb, mounted by enabled units, exporting exactly the spec's exports", () => {
  const lvs = JSON.parse(on("storage1", ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_name,vg_name,lv_size,devices"]).stdout) as { report: Array<{ lv: Array<{ lv_name: string; vg_name: string; lv_size: string; devices: string }> }> };
  const lv = new Map(lvs.report[0]!.lv.map((l) => [l.lv_name, l]));
  assert.deepEqual([...lv.keys()].sort(), ["longhorn_lv", "postgres_lv", "shared_lv"]);
  assert.equal(Number(lv.get("postgres_lv")!.lv_size), 4 * 1024 ** 3);
  assert.ok([...lv.values()].every((l) => l.vg_name === "data" && l.devices.startsWith("/dev/vdb")));
  for (const [where, unit] of [["/srv/nfs/postgresql", "srv-nfs-postgresql.mount"], ["/srv/nfs/shared", "srv-nfs-shared.mount"], ["/mnt/longhorn-disk", "mnt-longhorn\\x2ddisk.mount"]]) {
    assert.equal(on("storage1", ["findmnt", "-n", "-o", "FSTYPE", where!]).stdout.trim(), "ext4", where);
    assert.equal(on("storage1", ["systemctl", "is-enabled", unit!]).stdout.trim(), "enabled", unit);
  }
  // what the kernel's NFS server exports, not what /etc/exports says
  const exported = on("storage1", ["exportfs", "-s"]).stdout.trim().split("\n").map((l) => l.replace(/\(.*$/, "")).sort();
  assert.deepEqual(exported, ["/srv/nfs/postgresql  10.33.3.14", "/srv/nfs/shared  10.33.4.0/24"]);
});

test("postgresql1 cannot mount /srv/nfs/shared: it is not among that export's clients", () => {
  const m = sh("postgresql1", `mkdir -p /mnt/probe && timeout 60 mount -t nfs4 -o vers=4.2,soft,timeo=30,retrans=1 ${STORAGE}:/srv/nfs/shared /mnt/probe; echo "rc=$?"; findmnt -n /mnt/probe || true`, 90_000);
  assert.match(m.stdout, /rc=(?!0\b)\d+/, m.stdout + m.stderr);
  // NFSv4: a path outside the client's exports is not even in its pseudo-filesystem
  assert.match(m.stderr, /No such file or directory|access denied/i);
  assert.doesNotMatch(m.stdout, /\/mnt\/probe/, "nothing mounted");
});

test("PostgreSQL keeps its data on the NFS export, listens on the spec address, and admits only the cluster subnet", () => {
  const dataDir = sh("postgresql1", "runuser -u postgres -- psql -XAtc 'show data_directory'").stdout.trim();
  assert.equal(dataDir, "/var/lib/pgsql/15/main");
  assert.equal(on("postgresql1", ["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", dataDir]).stdout.trim().replace(/\s+/, " "), `${STORAGE}:/srv/nfs/postgresql nfs4`);
  assert.equal(on("storage1", ["cat", "/srv/nfs/postgresql/15/main/PG_VERSION"]).stdout.trim(), "15", "the cluster's files are on storage1");
  assert.match(on("postgresql1", ["ss", "-Hltn", "sport", "= :5432"]).stdout, new RegExp(`${PG.replace(/\./g, "\\.")}:5432`));
  assert.equal(psql("create table if not exists rows_written(id bigserial primary key, v text not null)").status, 0);
  // postgresql1's own address is outside the cluster subnet: no pg_hba.conf line admits it
  const refused = sh("postgresql1", `PGPASSWORD=x psql -h ${PG} -U app -d app -XAtc 'select 1'`);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /no pg_hba\.conf entry for host "10\.33\.3\.14"/);
});

type Commit = { at: number; id: number };
const committed = (): Commit[] =>
  on("worker1", ["cat", "/root/committed"]).stdout.trim().split("\n").filter(Boolean).map((l) => {
    const [at, id] = l.split(" ");
    return { at: Number(at), id: Number(id) };
  });

/** The pauses over 1 s in the commits from `t0` on: [seconds after t0 when it began, its length]. */
function pauses(log: Commit[], t0: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let prev = log.filter((c) => c.at < t0).at(-1)?.at ?? t0;
  for (const c of log.filter((x) => x.at >= t0)) {
    if (c.at - prev > 1) out.push([prev - t0, c.at - prev]);
    prev = c.at;
  }
  return out;
}

async function fault(name: string, act: () => Promise<unknown> | unknown): Promise<void> {
  const t0 = Date.now() / 1000;
  await act();
  const acted = Date.now() / 1000;
  // PostgreSQL serves again by itself: new commits, with nobody's help
  await until(`commits after ${name}`, () => committed().filter((c) => c.at > acted).length >= 5 || undefined, 300_000, 1000);
  const p = pauses(committed(), t0);
  // recovered: the end of the last pause, from the fault's start
  const back = p.length ? p.at(-1)![0] + p.at(-1)![1] : 0;
  recoveries.push(`${name}: writes again after ${back.toFixed(1)} s (pauses ${p.map(([at, len]) => `${len.toFixed(1)} s at +${at.toFixed(1)} s`).join(", ") || "none"}; the fault took ${(acted - t0).toFixed(1)} s)`);
}

test("every committed row survives restarts of PostgreSQL and NFS and reboots of both VMs; PostgreSQL comes back by itself", async () => {
  assert.equal(labExec("worker1", ["sh", "-c", "cat > /root/writer.sh && chmod 755 /root/writer.sh && : > /root/committed"], { input: WRITER }).status, 0);
  assert.equal(on("worker1", ["systemd-run", "--unit", "fmc-writer", "-p", "Environment=PGCONNECT_TIMEOUT=3", "/root/writer.sh"]).status, 0);
  await until("the writer's first commits", () => committed().length >= 5 || undefined, 60_000, 500);

  // the writer stops whatever happens here: the next tests count rows
  try {
    await fault("PostgreSQL restart", () => assert.equal(on("postgresql1", ["systemctl", "restart", PG_UNIT]).status, 0));
    await fault("NFS server restart", () => assert.equal(on("storage1", ["systemctl", "restart", "nfs-server.service"]).status, 0));
    // (postgresql1 alone is not rebooted: the reboot of both covers its boot, PostgreSQL
    // waiting for its NFS mount, and under emulation each of its boots costs ≈ 3 min)
    await fault("storage1 reboot", () => labReboot("storage1"));
    // postgresql1's shutdown waits for storage1 (PostgreSQL's last checkpoint goes to a hard NFS
    // mount, by design): its reboot takes storage1's and its own, so its bound covers both
    await fault("both rebooted at once", () => Promise.all([labReboot("storage1"), labReboot("postgresql1", 480_000)]));
  } finally {
    assert.equal(on("worker1", ["systemctl", "stop", "fmc-writer"]).status, 0);
  }
  const log = committed();
  const inDb = new Set(psql("select id from rows_written").stdout.trim().split("\n").map(Number));
  const lost = log.filter((c) => !inDb.has(c.id));
  assert.ok(log.length > 100, `${log.length} commits`);
  assert.deepEqual(lost, [], `${lost.length} of ${log.length} committed rows are gone`);
  // after the reboots, the units that keep the data layer came back on their own
  // (PostgreSQL answers a moment before pg_ctlcluster returns, so the unit may still be "activating")
  let states = "";
  await until("the mount and PostgreSQL units active", () => {
    states = on("postgresql1", ["systemctl", "is-active", MOUNT_UNIT, PG_UNIT]).stdout.trim();
    return states === "active\nactive" || undefined;
  }, 120_000, 1000).catch(() => undefined);
  assert.equal(states, "active\nactive");
  // cloud-init ran again at every boot with the same seed and ended cleanly each time;
  // storage1 kept what its Ignition made (a reboot is no first boot: Ignition ran once)
  const ci = on("postgresql1", ["cloud-init", "status", "--wait", "--long"], 180_000);
  assert.match(ci.stdout, /^status: done$/m, ci.stdout + ci.stderr);
  assert.doesNotMatch(ci.stdout, /^errors:\s*\n\s+-/m, ci.stdout);
  const result = on("storage1", ["cat", "/etc/.ignition-result.json"]);
  assert.equal(result.status, 0, result.stderr);
  assert.equal((JSON.parse(result.stdout) as { userConfigProvided: boolean }).userConfigProvided, true);
  const ign = on("storage1", ["journalctl", "-b", "0", "-o", "cat", "--no-pager", "-u", "fmc-lab-ignition.service"]);
  assert.match(ign.stdout, /fmc-lab-ignition: provisioned already/, `this boot skipped Ignition: ${ign.stdout}${ign.stderr}`);
  assert.equal(run("plan", "--detailed-exitcode").status, 0, "nothing to repair after the faults");
});

test("without its NFS mount PostgreSQL does not start and writes nothing locally; fmc plan says why; apply brings it back", async () => {
  const rows = Number(psql("select count(*) from rows_written").stdout.trim());
  assert.equal(on("postgresql1", ["systemctl", "stop", MOUNT_UNIT]).status, 0);
  assert.equal(on("postgresql1", ["systemctl", "is-active", PG_UNIT]).stdout.trim(), "inactive", "bound to the mount: it stopped with it");
  assert.equal(on("storage1", ["systemctl", "stop", "nfs-server.service"]).status, 0);
  // asked to start, PostgreSQL waits for a mount that cannot come
  assert.equal(on("postgresql1", ["systemctl", "start", "--no-block", PG_UNIT]).status, 0);
  await sleep(8000);
  assert.notEqual(on("postgresql1", ["systemctl", "is-active", PG_UNIT]).stdout.trim(), "active");
  // and forced past its dependencies, its own checks refuse the local disk
  const forced = on("postgresql1", ["systemctl", "start", "--job-mode=ignore-dependencies", PG_UNIT]);
  assert.notEqual(forced.status, 0);
  assert.match(forced.stderr, /Assertion failed/);
  assert.equal(on("postgresql1", ["pgrep", "-x", "postgres"]).status, 1, "no postgres process");
  assert.equal(sh("postgresql1", "findmnt -n /var/lib/pgsql; ls -A /var/lib/pgsql | wc -l").stdout.trim(), "0", "nothing was written to the local data path");

  const p = run("plan", "--detailed-exitcode");
  assert.equal(p.status, 2, p.stderr);
  assert.match(p.stdout, /start nfs-server\.service/);
  assert.match(p.stdout, /PostgreSQL does not run without its data: \/var\/lib\/pgsql is not mounted \(var-lib-pgsql\.mount is \w+\), so postgresql@15-main\.service is \w+; it is bound to the mount and refuses to start on the local disk/);

  const a = run("apply", "--yes");
  assert.equal(a.status, 0, a.stderr);
  await until("PostgreSQL back on its mount", () => psql("select count(*) from rows_written").stdout.trim() || undefined, 120_000, 1000);
  assert.equal(Number(psql("select count(*) from rows_written").stdout.trim()), rows, "the same rows");
  assert.equal(run("plan", "--detailed-exitcode").status, 0);
});

test("fmc backup postgres, a dropped table, fmc restore postgres: the rows come back; a damaged backup is refused", () => {
  const rows = psql("select count(*), sum(id) from rows_written").stdout.trim();
  const b = run("backup", "postgres");
  assert.equal(b.status, 0, b.stderr);
  const backups = join(dir, "backups");
  const dump = readdirSync(backups).find((f) => /^app-\d{8}T\d{6}Z\.dump$/.test(f))!;
  assert.ok(dump, readdirSync(backups).join(", "));
  assert.match(readFileSync(join(backups, ".gitignore"), "utf8"), /^\*$/m, "backups are never committed with the spec");
  // the checksum beside it is what sha256sum -c reads
  assert.equal(spawnSync("sha256sum", ["-c", `${dump}.sha256`], { cwd: backups, encoding: "utf8" }).status, 0);

  assert.equal(psql("drop table rows_written").status, 0);
  const unconfirmed = run("restore", "postgres", join(backups, dump));
  assert.notEqual(unconfirmed.status, 0);
  assert.match(unconfirmed.stderr, /error\[CONFIRM\]/);
  assert.notEqual(psql("select 1 from rows_written limit 1").status, 0, "nothing restored without a confirmation");

  // a damaged copy, with the original's checksum file beside it
  const bad = mkdtempSync(join(dir, "damaged-"));
  const data = readFileSync(join(backups, dump));
  const mid = Math.floor(data.length / 2);
  data[mid] = data[mid]! ^ 0xff;
  writeFileSync(join(bad, dump), data);
  copyFileSync(join(backups, `${dump}.sha256`), join(bad, `${dump}.sha256`));
  const refused = run("restore", "postgres", join(bad, dump), "--yes");
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /error\[BACKUP_CHECKSUM\] .* does not match its checksum/);
  assert.notEqual(psql("select 1 from rows_written limit 1").status, 0, "the damaged file was not restored");

  const r = run("restore", "postgres", join(backups, dump), "--yes");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(psql("select count(*), sum(id) from rows_written").stdout.trim(), rows, "every row is back");
});

test("a volume grown in the spec grows online, still mounted and exported; a shrink is refused with the sizes", () => {
  const spec = join(dir, "cluster.yaml");
  const original = readFileSync(spec, "utf8");
  const withShared = (size: string) => writeFileSync(spec, original.replace("{ name: shared_lv,   size: 1G,", `{ name: shared_lv,   size: ${size},`));
  const size = () => Number(on("storage1", ["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", "data/shared_lv"]).stdout.trim());
  const fsBytes = () => Number(on("storage1", ["findmnt", "-n", "-b", "-o", "SIZE", "/srv/nfs/shared"]).stdout.trim());
  const fsBefore = fsBytes();
  try {
    withShared("2G");
    const p = run("plan", "--phase", "storage");
    assert.equal(p.status, 0, p.stderr);
    assert.match(p.stdout, /grow data\/shared_lv from 1(\.0)? GiB to 2G with its ext4 filesystem/);
    const a = run("apply", "--yes", "--phase", "storage");
    assert.equal(a.status, 0, a.stderr);
    assert.equal(size(), 2 * 1024 ** 3);
    assert.ok(fsBytes() > fsBefore * 1.8, `the filesystem grew with it: ${fsBefore} -> ${fsBytes()}`);
    assert.match(on("storage1", ["exportfs", "-s"]).stdout, /^\/srv\/nfs\/shared\s/m, "still exported");
    withShared("1G");
    const shrink = run("plan", "--phase", "storage");
    assert.notEqual(shrink.status, 0);
    assert.match(shrink.stdout + shrink.stderr, /SHRINK_REFUSED.*data\/shared_lv is 2(\.0)? GiB, the spec asks for 1G .*fmc never shrinks a volume/);
    assert.equal(size(), 2 * 1024 ** 3, "nothing was shrunk");
  } finally {
    writeFileSync(spec, original.replace("{ name: shared_lv,   size: 1G,", "{ name: shared_lv,   size: 2G,"));
  }
  assert.equal(run("plan", "--detailed-exitcode").status, 0);
});
