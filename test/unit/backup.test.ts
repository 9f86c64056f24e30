// Backups and restores when something goes wrong on the way, through a transport that runs
// each command as a local process with the SSH transport's stream semantics: a store whose
// read fails mid-restore, a disk that fills during a backup (here or on the storage host),
// a file changed after its check; and fmc backup etcd's snapshot: the k3s binary found
// where fmc installs it (no k3s on PATH), and a snapshot name a server prints that is not a
// plain file name refused before anything is written.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { FmcError } from "../../src/errors.js";
import type { Command } from "../../src/hosts/command.js";
import { postgresLayout } from "../../src/hosts/os.js";
import type { ExecResult, StreamIo, Transport } from "../../src/hosts/transport.js";
import { checksumLine, localStore, remoteStore } from "../../src/local/backup-store.js";
import { backupEtcdSnapshot } from "../../src/runbooks/etcd-backup.js";
import { K3S_SNAPSHOT_DIR } from "../../src/k3s/etcd.js";
import { backupDatabase, restoreDatabase } from "../../src/runbooks/postgres-backup.js";
import { sha256File } from "../../src/local/digest.js";
import { tempDir } from "../helpers.js";

const LAYOUT = postgresLayout("debian-like", "15", "/var/lib/pgsql");
/** The time limit the commands are given: what a hang would cost. */
const HOUR_MS = 3_600_000;
/** A generous bound for "failed instead of hanging": far below the hour, far above the work. */
const DID_NOT_HANG_MS = 20_000;

/** The promise's outcome, or a rejection saying it hung. */
function bounded<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still running after ${DID_NOT_HANG_MS / 1000} s: it hangs`)), DID_NOT_HANG_MS)));
  return Promise.race([p, hung]).finally(() => clearTimeout(timer));
}

const coded = (code: string, re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof FmcError, `an FmcError, not ${String(e)}`);
  assert.equal(e.code, code, e.message);
  assert.match(e.message, re);
  return true;
};

/**
 * Runs each command as a local bash process (after `rewrite`, which stands in for the host's
 * programs), with SshTransport.stream's semantics: stdin and stdout through pipeline(),
 * a failing output side stops the command, a command killed or cut off rejects, an exit
 * code resolves with its error output. Records every command and how each process ended.
 */
class ProcessTransport implements Transport {
  readonly log: Command[] = [];
  readonly ended: Array<{ shell: string; code: number | null; signal: NodeJS.Signals | null }> = [];
  private readonly live = new Set<ChildProcess>();
  constructor(
    readonly host: string,
    private readonly rewrite: (shell: string) => string = (s) => s,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}
  async exec(c: Command): Promise<ExecResult> {
    this.log.push(c);
    const r = spawnSync("bash", ["-c", this.rewrite(c.shell)], { encoding: "utf8", input: c.stdin, env: this.env });
    return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
  }
  stream(c: Command, step: string, io: StreamIo): Promise<{ code: number; stderr: string }> {
    this.log.push(c);
    const shell = this.rewrite(c.shell);
    const p = spawn("bash", ["-c", shell], { stdio: ["pipe", "pipe", "pipe"], env: this.env });
    this.live.add(p);
    return new Promise((resolve, reject) => {
      let stderr = "";
      let settled = false;
      const settle = (f: () => void) => void (settled || ((settled = true), f()));
      p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const fail = (e: Error) => {
        p.kill("SIGKILL");
        settle(() => reject(new FmcError("SSH_STREAM", `${this.host}: ${step}: ${e.message}`)));
      };
      const written = io.stdout ? pipeline(p.stdout, io.stdout as Writable).catch(fail) : (p.stdout.resume(), Promise.resolve());
      let inputError: Error | undefined;
      if (io.stdin) pipeline(io.stdin as Readable, p.stdin).catch((e: Error) => ((inputError = e), p.kill("SIGKILL")));
      else p.stdin.end();
      p.on("close", (code, signal) => {
        this.live.delete(p);
        this.ended.push({ shell, code, signal });
        if (code === null) return settle(() => reject(new FmcError("SSH_STREAM", `${this.host}: ${step}: ${inputError ? `sending its input failed: ${inputError.message}` : `killed (${signal})`}`)));
        if (code === 0 && inputError) return settle(() => reject(new FmcError("SSH_STREAM", `${this.host}: ${step}: sending its input failed: ${inputError!.message}`)));
        void written.then(() => settle(() => resolve({ code, stderr })));
      });
    });
  }
  /** Once every process it started has ended. */
  async idle(): Promise<void> {
    while (this.live.size) await new Promise((res) => setTimeout(res, 20));
  }
  /** Whatever still runs (only after a test failed): stopped, so the test run ends. */
  killAll(): void {
    for (const p of this.live) p.kill("SIGKILL");
  }
  close(): void {}
}

function transport(t: { after: (fn: () => void) => void }, host: string, rewrite?: (shell: string) => string, env?: NodeJS.ProcessEnv): ProcessTransport {
  const tr = new ProcessTransport(host, rewrite, env);
  t.after(() => tr.killAll());
  return tr;
}

/** A dump with its .sha256, as fmc backup postgres leaves them. */
function storedDump(dir: string, name: string, bytes: number): Buffer {
  mkdirSync(dir, { recursive: true });
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 7919) % 251;
  writeFileSync(join(dir, name), data);
  const sha = spawnSync("sha256sum", [join(dir, name)], { encoding: "utf8" }).stdout.slice(0, 64);
  writeFileSync(join(dir, `${name}.sha256`), checksumLine(sha, name));
  return data;
}

/** The database host: pg_dump prints `dump`; pg_restore stands in as a reader of all of stdin that notes a clean end of its input. */
function databaseHost(t: { after: (fn: () => void) => void }, dir: string, dump = "cat /dev/zero"): ProcessTransport {
  return transport(t, "postgresql1", (s) => (s.includes("pg_dump") ? dump : s.includes("pg_restore") ? `cat > ${join(dir, "received")} && echo whole > ${join(dir, "input-ended")}` : s));
}

// ---- streams that fail

test("restore: reading the file fails mid-stream (here, or on the storage host, or its connection is lost): the restore fails at once with a coded error, pg_restore never gets the whole file and is stopped", async (t) => {
  const root = tempDir(t);
  const srv = join(root, "srv");
  const name = "app-20261125T170000Z.dump";
  const data = storedDump(srv, name, 1 << 20);
  const local = localStore(srv);
  // a disk here that fails after the first 256 KiB
  const failingDisk = {
    ...local,
    async open() {
      return Readable.from(
        (async function* () {
          yield data.subarray(0, 1 << 18);
          throw new Error("EIO: i/o error, read");
        })(),
      );
    },
  };
  // cat on the storage host: 200 KB, then a read error; or its connection dies
  const storageCat = (then: string) => transport(t, "storage1", (s) => (s.startsWith("cat ") ? `head -c 200000 ${s.slice(4)}; ${then}` : s));
  const cases = [
    { store: failingDisk, error: /EIO: i\/o error, read/ },
    { store: remoteStore(storageCat("echo 'cat: read error: Input/output error' >&2; exit 1"), srv, HOUR_MS), error: /storage1: reading .* failed \(exit 1\): cat: read error: Input\/output error/ },
    { store: remoteStore(storageCat("kill -9 $$"), srv, HOUR_MS), error: /storage1: .*killed/ },
  ];
  for (const [i, c] of cases.entries()) {
    const dir = join(root, String(i));
    mkdirSync(dir);
    const db = databaseHost(t, dir);
    await assert.rejects(bounded(restoreDatabase({ transport: db, layout: LAYOUT, db: "app", store: c.store, name, timeoutMs: HOUR_MS, confirm: async () => true })), coded("RESTORE_FAILED", c.error), `case ${i}`);
    // a restore stopped before the stand-in's shell opened its file received nothing
    const received = existsSync(join(dir, "received")) ? readFileSync(join(dir, "received")) : Buffer.alloc(0);
    assert.ok(received.length < data.length && received.equals(data.subarray(0, received.length)), `case ${i}: pg_restore got only the start of the file (${received.length} bytes)`);
    assert.ok(db.ended.some((e) => e.shell.includes("received")), `case ${i}: the restore on the database host ended`);
  }
});

test("backup: the disk here fills up: the backup fails at once with a coded error, pg_dump is stopped, nothing is left behind", async (t) => {
  const dir = join(tempDir(t), "backups");
  mkdirSync(dir);
  const now = new Date("2026-11-25T17:00:00Z");
  // the partial file is /dev/full: every write fails with ENOSPC
  symlinkSync("/dev/full", join(dir, "app-20261125T170000Z.dump.partial"));
  const db = databaseHost(t, dir);
  await assert.rejects(bounded(backupDatabase({ transport: db, layout: LAYOUT, db: "app", store: localStore(dir), keep: 3, now, timeoutMs: HOUR_MS })), coded("BACKUP_STORE", /no space left on device/i));
  await bounded(db.idle());
  // cat /dev/zero never ends by itself: it was stopped, by fmc's signal or by the write error
  // once fmc tore its pipe down (a child of node inherits SIGPIPE ignored, so EPIPE, exit 1)
  assert.ok(db.ended.some((e) => e.shell === "cat /dev/zero" && (e.signal !== null || e.code !== 0)), `pg_dump was stopped: ${JSON.stringify(db.ended)}`);
  assert.deepEqual(readdirSync(dir), [".gitignore"]);
});

test("backup: the storage host's disk fills up: the backup fails at once with the storage host's error, pg_dump is stopped, nothing is kept", async (t) => {
  const root = tempDir(t);
  const srv = join(root, "srv");
  // the storage host's cat writes its file on a full disk
  const storage = transport(t, "storage1", (s) => s.replace(/^cat > .*$/m, "cat > /dev/full"));
  const db = databaseHost(t, root);
  await assert.rejects(
    bounded(backupDatabase({ transport: db, layout: LAYOUT, db: "app", store: remoteStore(storage, srv, HOUR_MS), keep: 3, now: new Date("2026-11-25T17:00:00Z"), timeoutMs: HOUR_MS })),
    coded("BACKUP_STORE", /storage1.*No space left on device/s),
  );
  await bounded(db.idle());
  // cat /dev/zero never ends by itself: it was stopped, by fmc's signal or by the write error
  // once fmc tore its pipe down (a child of node inherits SIGPIPE ignored, so EPIPE, exit 1)
  assert.ok(db.ended.some((e) => e.shell === "cat /dev/zero" && (e.signal !== null || e.code !== 0)), `pg_dump was stopped: ${JSON.stringify(db.ended)}`);
  assert.deepEqual(existsSync(srv) ? readdirSync(srv) : [], []);
});

test("restore: a file changed after its check never reaches pg_restore whole; a damaged one not at all", async (t) => {
  const root = tempDir(t);
  const dir = join(root, "backups");
  const name = "app-20261125T170000Z.dump";
  const good = storedDump(dir, name, 1 << 20);
  const db = databaseHost(t, root);
  // changed while the question was on the screen: checked good, then rewritten
  const tampered = Buffer.from(good);
  tampered[tampered.length - 10]! ^= 1;
  const confirm = async () => (writeFileSync(join(dir, name), tampered), true);
  await assert.rejects(bounded(restoreDatabase({ transport: db, layout: LAYOUT, db: "app", store: localStore(dir), name, timeoutMs: HOUR_MS, confirm })), coded("RESTORE_FAILED", /changed since it was checked/));
  const received = readFileSync(join(root, "received"));
  assert.ok(received.length < tampered.length && received.equals(tampered.subarray(0, received.length)), `the end of the file was never sent (${received.length} bytes were)`);
  // damaged before: refused before anything is asked or sent
  const sent = db.log.length;
  let asked = 0;
  await assert.rejects(restoreDatabase({ transport: db, layout: LAYOUT, db: "app", store: localStore(dir), name, timeoutMs: HOUR_MS, confirm: async () => (asked++, true) }), coded("BACKUP_CHECKSUM", /does not match its checksum/));
  assert.equal(db.log.length, sent, "nothing reached the database host");
  assert.equal(asked, 0);
  // and a good file is restored whole
  writeFileSync(join(dir, name), good);
  await bounded(restoreDatabase({ transport: db, layout: LAYOUT, db: "app", store: localStore(dir), name, timeoutMs: HOUR_MS, confirm: async () => true }));
  assert.ok(readFileSync(join(root, "received")).equals(good));
  assert.equal(existsSync(join(root, "input-ended")), true);
});

// ---- fmc backup etcd

const NOW = new Date("2026-11-25T17:00:00Z");
const SNAP_NAME = "fmc-20261125t170000z";

/** A K3s server whose snapshot listing prints `printed`; the snapshot file itself reads as `bytes`. */
class SnapshotServer implements Transport {
  readonly log: Command[] = [];
  readonly host = "master1";
  constructor(
    private readonly printed: string,
    private readonly bytes = Buffer.from("etcd snapshot"),
  ) {}
  async exec(c: Command): Promise<ExecResult> {
    this.log.push(c);
    return { code: 0, stdout: c.shell.includes("ls -1t") ? `${this.printed}\n` : "", stderr: "" };
  }
  async stream(c: Command, _step: string, io: StreamIo): Promise<{ code: number; stderr: string }> {
    this.log.push(c);
    await new Promise<void>((res) => (io.stdout as Writable).end(this.bytes, () => res()));
    return { code: 0, stderr: "" };
  }
  close(): void {}
}

test("backup etcd: the name a server prints for its snapshot must be a plain K3s snapshot file name; anything else is refused before a byte is written", async (t) => {
  const root = tempDir(t);
  const dir = join(root, "a", "b", "backups", "etcd");
  const refused = [
    `${K3S_SNAPSHOT_DIR}/${SNAP_NAME}-x/../../../../../escaped`,
    `${SNAP_NAME}-x/../../../../escaped`,
    `${SNAP_NAME}-master1/../1795626000`,
    `${SNAP_NAME}-master1..x-1795626000`,
    `${SNAP_NAME}-master1-1795626000/`,
    `${SNAP_NAME}-master1-1795626000.sha256`,
    `on-demand-master1-1795626000`,
    `/etc/${SNAP_NAME}-master1-1795626000`,
    "",
  ];
  for (const printed of refused) {
    const server = new SnapshotServer(printed);
    await assert.rejects(
      backupEtcdSnapshot({ servers: ["master1"], transports: new Map([["master1", server]]), unreachable: new Map(), dir, timeoutMs: 10_000, now: NOW }),
      coded("ETCD_SNAPSHOT_NAME", /not a plain snapshot file name/),
      JSON.stringify(printed),
    );
    assert.equal(server.log.filter((c) => c.shell.startsWith("cat ")).length, 0, `${JSON.stringify(printed)}: nothing was copied`);
  }
  assert.equal(existsSync(join(root, "escaped")), false);
  assert.equal(existsSync(join(root, "a", "escaped")), false);
  assert.deepEqual(existsSync(dir) ? readdirSync(dir).filter((f) => f !== ".gitignore") : [], []);
  for (const printed of [`${SNAP_NAME}-master1-1795626000`, `${SNAP_NAME}-master-1.k3s.example-1795626000.zip`]) {
    const r = await backupEtcdSnapshot({ servers: ["master1"], transports: new Map([["master1", new SnapshotServer(printed)]]), unreachable: new Map(), dir, timeoutMs: 10_000, now: NOW });
    assert.equal(r.path, join(dir, printed));
    assert.equal(readFileSync(r.path, "utf8"), "etcd snapshot");
  }
});

test("backup etcd runs the k3s fmc installed (/opt/bin on Flatcar, /usr/local/bin elsewhere) when k3s is not on the SSH shell's PATH", async (t) => {
  for (const [family, bin] of [
    ["flatcar", "/opt/bin"],
    ["debian-like", "/usr/local/bin"],
  ] as const) {
    const root = tempDir(t);
    const snapshots = join(root, "snapshots");
    mkdirSync(snapshots);
    mkdirSync(join(root, bin), { recursive: true });
    // the k3s binary: notes how it was called and saves a snapshot as K3s names them
    writeFileSync(join(root, bin, "k3s"), `#!/bin/bash\necho "$*" > ${join(root, "argv")}\n[ "$1 $2 $3" = "etcd-snapshot save --name" ] || exit 2\nprintf 'etcd snapshot from ${family}' > ${snapshots}/"$4"-master1-1795626000\n`);
    chmodSync(join(root, bin, "k3s"), 0o755);
    const server = transport(t, "master1", (s) => s.replaceAll("/opt/bin/", `${root}/opt/bin/`).replaceAll("/usr/local/bin/", `${root}/usr/local/bin/`).replaceAll(K3S_SNAPSHOT_DIR, snapshots), { PATH: "/usr/bin:/bin" });
    const dir = join(root, "backups");
    const r = await backupEtcdSnapshot({ servers: ["master1"], transports: new Map([["master1", server]]), unreachable: new Map(), dir, timeoutMs: 10_000, now: NOW });
    assert.equal(readFileSync(join(root, "argv"), "utf8"), `etcd-snapshot save --name ${SNAP_NAME}\n`, family);
    assert.equal(r.path, join(dir, `${SNAP_NAME}-master1-1795626000`));
    assert.equal(readFileSync(r.path, "utf8"), `etcd snapshot from ${family}`);
    assert.equal(readFileSync(`${r.path}.sha256`, "utf8"), checksumLine(await sha256File(r.path), `${SNAP_NAME}-master1-1795626000`));
    // the command line: K3s's own binary, found where fmc installs it
    const save = server.log[0]!;
    assert.equal(save.display, `k3s etcd-snapshot save --name ${SNAP_NAME}`);
    assert.match(save.shell, /\[ -x \/opt\/bin\/k3s \]/);
    assert.match(save.shell, /b=\/usr\/local\/bin\/k3s/);
    assert.doesNotMatch(save.shell, /(^|[\s;])k3s etcd-snapshot/m, "never a bare k3s from PATH");
  }
});
