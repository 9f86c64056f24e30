// Benchmark: what the seed's choice of PostgreSQL data on NFS costs. On the lab's
// postgresql1 VM (test/fixtures/lab-data.yaml, applied by fmc), pgbench's TPC-B-like
// load (small scale, bounded time) against the cluster fmc set up on storage1's NFS
// export, and against a second cluster on the VM's own disk, alternating, in one run;
// then sequential write (fdatasync at the end) and read (client cache dropped) of one
// file on the NFS mount and on the local disk. Printed as ratios NFS / local.
// Both VMs run under software emulation here (no working KVM): absolute numbers are
// small, the ratio is the point. Needs root (the lab). Run: npm run bench:database
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { labExec } from "../src/lab/lab.js";

const ROOT = resolve(import.meta.dirname, "..");
const FMC = join(ROOT, "bin/fmc.js");
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const SECONDS = Number(process.env.SECONDS_PER_RUN ?? 20);
const SCALE = Number(process.env.SCALE ?? 5);
const SEQ_MIB = Number(process.env.SEQ_MIB ?? 256);
const work = mkdtempSync(join(tmpdir(), "fmc-bench-database-"));

const NFS_DIR = "/var/lib/pgsql"; // database.dataDir: the NFS mount
const LOCAL_DIR = "/var/lib/fmc-bench"; // on the VM's own disk
const NFS_PORT = 5432;
const LOCAL_PORT = 5433;

function fmc(...args: string[]): string {
  const r = spawnSync(process.execPath, [FMC, ...args], { cwd: work, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  if (r.status !== 0) throw new Error(`fmc ${args.join(" ")} exited ${r.status}:\n${r.stdout.slice(-1500)}\n${r.stderr.slice(-1500)}`);
  return r.stdout;
}
function pg(body: string, timeoutMs = 600_000): string {
  const r = labExec("postgresql1", ["bash", "-c", `set -euo pipefail; cd /; ${body}`], { timeoutMs });
  if (r.status !== 0) throw new Error(`postgresql1: ${body}\nexit ${r.status}: ${r.stderr.slice(-1500)}`);
  return r.stdout + r.stderr;
}
const asPostgres = (cmd: string) => `runuser -u postgres -- ${cmd}`;

/** TPC-B-like transactions per second (pgbench's figure without connection time). */
function pgbench(port: number): number {
  const out = pg(asPostgres(`pgbench -h /var/run/postgresql -p ${port} -c 2 -j 1 -T ${SECONDS} -n bench`), (SECONDS + 120) * 1000);
  const tps = out.match(/tps = ([\d.]+) \(without initial connection time\)/)?.[1];
  if (!tps) throw new Error(`no tps in pgbench output:\n${out}`);
  return Number(tps);
}

/** MB/s of one sequential write (fdatasync before dd ends) and one read with the client's cache dropped. */
function sequential(dir: string): { write: number; read: number } {
  const rate = (out: string) => {
    const m = out.match(/copied, ([\d.]+) s, /);
    if (!m) throw new Error(`no rate in dd output:\n${out}`);
    return (SEQ_MIB * 1048576) / Number(m[1]) / 1e6;
  };
  const f = `${dir}/fmc-bench-seq`;
  const write = rate(pg(`dd if=/dev/zero of=${f} bs=1M count=${SEQ_MIB} conv=fdatasync 2>&1`));
  pg("sync; echo 3 > /proc/sys/vm/drop_caches");
  const read = rate(pg(`dd if=${f} of=/dev/null bs=1M 2>&1; rm -f ${f}`));
  return { write, read };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main(): Promise<void> {
  copyFileSync(join(ROOT, "test/fixtures/lab-data.yaml"), join(work, "cluster.yaml"));
  process.stderr.write("lab up and apply (storage1 and postgresql1 as VMs) …\n");
  fmc("lab", "up", "--only", "storage,database");
  try {
    fmc("apply", "--yes");
    // a second cluster on the VM's own disk, the same version and settings as Debian makes them
    pg(`mkdir -p ${LOCAL_DIR} && chown postgres: ${LOCAL_DIR} && pg_createcluster 15 benchlocal -d ${LOCAL_DIR}/15 -p ${LOCAL_PORT} --start >/dev/null`);
    for (const port of [NFS_PORT, LOCAL_PORT]) {
      pg(asPostgres(`createdb -h /var/run/postgresql -p ${port} bench`));
      pg(asPostgres(`pgbench -h /var/run/postgresql -p ${port} -i -q -s ${SCALE} bench 2>&1`));
    }
    const tps = { nfs: [] as number[], local: [] as number[] };
    for (let i = 0; i < ROUNDS; i++) {
      tps.nfs.push(pgbench(NFS_PORT));
      tps.local.push(pgbench(LOCAL_PORT));
      process.stderr.write(`round ${i + 1}: NFS ${tps.nfs.at(-1)!.toFixed(1)} tps, local ${tps.local.at(-1)!.toFixed(1)} tps\n`);
    }
    const seq = { nfs: sequential(NFS_DIR), local: sequential(LOCAL_DIR) };
    const rows = [
      `| pgbench TPC-B-like, scale ${SCALE}, 2 clients, ${ROUNDS} × ${SECONDS} s | ${mean(tps.nfs).toFixed(1)} tps | ${mean(tps.local).toFixed(1)} tps | ${(mean(tps.nfs) / mean(tps.local)).toFixed(2)} |`,
      `| sequential write ${SEQ_MIB} MiB (fdatasync) | ${seq.nfs.write.toFixed(1)} MB/s | ${seq.local.write.toFixed(1)} MB/s | ${(seq.nfs.write / seq.local.write).toFixed(2)} |`,
      `| sequential read ${SEQ_MIB} MiB (client cache dropped) | ${seq.nfs.read.toFixed(1)} MB/s | ${seq.local.read.toFixed(1)} MB/s | ${(seq.nfs.read / seq.local.read).toFixed(2)} |`,
    ];
    process.stdout.write(`\n| workload on postgresql1 | NFS (storage1:/srv/nfs/postgresql) | local disk | ratio NFS / local |\n|---|---|---|---|\n${rows.join("\n")}\n`);
  } finally {
    spawnSync(process.execPath, [FMC, "lab", "down", "--force"], { cwd: work, stdio: "ignore" });
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
