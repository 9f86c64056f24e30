// fmc restore etcd SNAPSHOT: K3s's documented restore of embedded etcd on several servers,
// as a runbook. The order and the facts it rests on, from K3s's own documentation
// (docs.k3s.io/cli/etcd-snapshot, "Restoring Snapshots", tab "Multiple Servers"; k3s-io/docs
// docs/cli/etcd-snapshot.md) and code (k3s-io/k3s pkg/etcd/etcd.go Reset/Restore,
// pkg/cluster/cluster.go, pkg/cli/server/server.go):
//
// 1. Stop K3s on every server (`systemctl stop k3s`). Agents are not stopped: the docs stop
//    only servers, and an agent's load balancer reconnects to the API once a server answers.
// 2. On ONE server run `k3s server --cluster-reset --cluster-reset-restore-path=<file>`.
//    K3s moves the current database to server/db/etcd-old-<time>, restores the snapshot
//    (checking its hash), starts etcd as the only member of a new cluster, writes the
//    bootstrap data (CA certificates and other secrets) from the snapshot back to disk, logs
//    "Managed etcd cluster membership has been reset, restart without --cluster-reset flag
//    now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the
//    nodes" (older releases: "Etcd is running, restart without --cluster-reset flag now")
//    and EXITS 0: it does not keep running. It also leaves server/db/reset-flag, which a
//    normal start removes (a second reset without a restore path is refused while it exists).
//    K3s refuses a cluster reset while a server URL is configured ("cannot perform
//    cluster-reset while server URL is set - remove server from configuration before
//    resetting"), and fmc's config.yaml has `server:` on every server once the cluster exists:
//    command-line flags come after config.yaml's values and win (pkg/configfilearg/parser.go),
//    so the reset runs with `--server=` (empty). With k3s.etcdS3 in config.yaml K3s would look
//    for the name in the bucket: a local file needs `--etcd-s3=false` (the same docs).
// 3. Start K3s there again (`systemctl start k3s`), and wait until its API and etcd answer.
// 4. On every other server, back up and delete server/db ("Backup and delete ${datadir}/
//    server/db on each peer"): fmc moves it aside to server/db.before-restore-<time> (nothing is
//    deleted), then starts K3s, which joins the restored cluster afresh; one at a time, each
//    waited for until its member is a healthy voting member (K3s adds it as a learner first).
// The token: the snapshot's bootstrap data is encrypted with the server token; K3s reads it
// from config.yaml (fmc writes the spec's k3s-token there), so the restore needs the token the
// cluster had when the snapshot was taken ("Restoring To New Hosts": pass the same --token).
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { FmcError } from "../errors.js";
import { cmd, script, slow, uploadScript, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { OsFamilyName } from "../hosts/facts.js";
import { k3sBinDir } from "../hosts/os.js";
import type { ClusterContext } from "../state/context.js";
import type { Host } from "../model/schema.js";
import { sha256File } from "../local/digest.js";
import { SERVER_READY_S } from "../k3s/k3s-cli.js";
import { etcdAccess, isMember, K3S_DB_DIR, K3S_ETCD, K3S_SNAPSHOT_DIR, memberLabel, readCluster, untilVotingMember, type EtcdAccess } from "../k3s/etcd.js";
import type { RunbookStep } from "./runbook.js";

/** What `k3s server --cluster-reset` logs when it is done: "Managed etcd cluster membership has been reset, restart without…" now, "Etcd is running, restart without…" in older releases. */
export const RESET_DONE = "restart without --cluster-reset flag now";

/** A snapshot file here, with the checksum its .sha256 says it must have. */
export interface Snapshot {
  /** Absolute path on this machine. */
  readonly path: string;
  /** Its file name: also its name in K3s's snapshot directory on the reset server. */
  readonly name: string;
  /** The SHA-256 its .sha256 names (not yet compared: verifySnapshot does). */
  readonly sha256: string;
  readonly bytes: number;
  /** From K3s's name <name>-<node>-<unix seconds>; the file's time otherwise. */
  readonly takenAt: Date;
  /** The node K3s saved it on, when its name says so. */
  readonly node?: string;
}

/** "<hex>  <name>" (sha256sum's format, also with a "*" for binary mode), for this name. */
function checksumOf(text: string, name: string): string | undefined {
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line.trim());
    if (m && basename(m[2]!) === name) return m[1];
  }
  return undefined;
}

/**
 * The snapshot and the checksum beside it. Refuses (before anything else happens) a missing
 * file, a missing or unreadable .sha256, and a name that cannot be a K3s snapshot file name.
 */
export function readSnapshot(file: string): Snapshot {
  const path = resolve(file);
  if (!existsSync(path) || !statSync(path).isFile()) throw new FmcError("USAGE", `${file}: no such file`, "the file fmc backup etcd wrote (it prints its path)");
  const name = basename(path);
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$/.test(name) || name.endsWith(".sha256")) {
    throw new FmcError("USAGE", `${file}: not a snapshot file name fmc can restore (letters, digits, . _ + - only; not the .sha256)`);
  }
  const sumFile = `${path}.sha256`;
  if (!existsSync(sumFile)) throw new FmcError("BACKUP_CHECKSUM", `${file} has no ${name}.sha256 beside it: refusing to restore a snapshot that cannot be checked`, "restore a snapshot fmc backup etcd wrote, with its .sha256");
  const sha256 = checksumOf(readFileSync(sumFile, "utf8"), name);
  if (!sha256) throw new FmcError("BACKUP_CHECKSUM", `${name}.sha256 has no checksum line for ${name}: refusing to restore it`, "it must read: <sha256>  <file name>");
  const st = statSync(path);
  // K3s names snapshots <name>-<node name>-<unix seconds>[.zip] (docs.k3s.io/cli/etcd-snapshot);
  // the node is told apart only behind the names fmc and K3s give (fmc-<time>, on-demand, etcd-snapshot)
  const unix = /-(\d{9,11})(\.zip)?$/.exec(name);
  const node = /^(?:fmc-\d{8}t\d{6}z|on-demand|etcd-snapshot)-(.+)-\d{9,11}(?:\.zip)?$/.exec(name)?.[1];
  return { path, name, sha256, bytes: st.size, takenAt: unix ? new Date(Number(unix[1]) * 1000) : st.mtime, ...(node ? { node } : {}) };
}

/** Hashes the file and refuses a mismatch with its .sha256. */
export async function verifySnapshot(s: Snapshot): Promise<string> {
  const got = await sha256File(s.path);
  if (got !== s.sha256) {
    throw new FmcError("BACKUP_CHECKSUM", `${s.name} does not match its checksum (SHA-256 ${got}, ${s.name}.sha256 says ${s.sha256}): refusing to restore it`, "the file is damaged or was changed; restore another snapshot");
  }
  return `${s.name}: SHA-256 ${got.slice(0, 12)}… matches its .sha256 (${size(s.bytes)})`;
}

export interface RestoreOptions {
  /** The snapshot file here (its .sha256 beside it). */
  readonly snapshot: string;
  /** Each server's OS family: where its k3s binary is (the install phase's k3sBinDir). */
  readonly families: ReadonlyMap<string, OsFamilyName>;
  /** When the run was planned: names the directories set aside. */
  readonly now: Date;
  /** Seconds each start may take before the run stops (default SERVER_READY_S, as apply waits). */
  readonly waitS?: number;
  /** Seconds between two looks while waiting (default 2). */
  readonly everyS?: number;
  /** How to reach etcd on a server (K3s's own client certificate by default). */
  readonly access?: EtcdAccess;
}

/** Bytes for people: 812 B, 14.2 KiB, 3.0 MiB. */
const size = (b: number) => (b < 1024 ? `${b} B` : b < 1048576 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 1048576).toFixed(1)} MiB`);

/** 2026-11-25T17:45:10.123Z -> 20261125T174510Z (as fmc backup names its files). */
const stampOf = (d: Date) => d.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");

const asideDir = (now: Date) => `${K3S_DB_DIR}.before-restore-${stampOf(now)}`;

function binOf(o: RestoreOptions, h: Host): string {
  const family = o.families.get(h.name);
  if (!family) throw new FmcError("RESTORE_FACTS", `${h.name}: its OS family is not known, so neither is where its k3s binary is`);
  return `${k3sBinDir(family)}/k3s`;
}

/** Refuses to go on while K3s runs on this server (a reset or a data move under a running etcd would break it). */
const NOT_RUNNING = `if systemctl is-active --quiet k3s; then echo "k3s is running on this server: stop it first (systemctl stop k3s)" >&2; exit 1; fi`;

/** The snapshot streamed to the reset server, checked there against the SHA-256 checked here, and put in K3s's snapshot directory. */
function uploadCommand(s: Snapshot, server: string): Command {
  const dir = quote(K3S_SNAPSHOT_DIR);
  return slow(
    uploadScript(
      [
        "set -eu",
        `mkdir -p -m 0700 ${dir}`,
        `tmp=$(mktemp ${dir}/.fmc-restore.XXXXXX)`,
        `trap 'rm -f "$tmp"' EXIT`,
        'cat > "$tmp"',
        `if ! echo ${quote(`${s.sha256}  `)}"$tmp" | sha256sum -c --status; then echo ${quote(`${s.name} arrived damaged on ${server}: its SHA-256 is not ${s.sha256}`)} >&2; exit 1; fi`,
        'chmod 0600 "$tmp"',
        `mv -f "$tmp" ${quote(`${K3S_SNAPSHOT_DIR}/${s.name}`)}`,
        "trap - EXIT",
      ].join("\n"),
      `upload ${s.name} (${size(s.bytes)}) into ${K3S_SNAPSHOT_DIR}/, its SHA-256 checked on ${server}`,
      s.path,
    ),
    900,
  );
}

/** `k3s server --cluster-reset --cluster-reset-restore-path=…` in the foreground: it restores, then exits. */
function resetCommand(ctx: ClusterContext, bin: string, path: string): Command {
  const args = [bin, "server", "--cluster-reset", `--cluster-reset-restore-path=${path}`, "--server="];
  if (ctx.spec.k3s.etcdS3) args.push("--etcd-s3=false");
  const c = cmd(...args);
  return slow(script(`${NOT_RUNNING}\nexec ${c.shell} 2>&1`, c.display), 900);
}

/**
 * Starts K3s without waiting for systemd's job: its unit is Type=notify with TimeoutStartSec=0,
 * so a blocking start lasts as long as K3s takes to join, and Restart=always starts it again
 * after a failed try; the wait step after it judges, with its own limit and the reason.
 */
const startCommand = () => cmd("systemctl", "start", "--no-block", "k3s");

/** One look: the API answers /readyz and the local etcd member says it is healthy (what apply waits for). */
function readyCommand(bin: string): Command {
  const curl = cmd("curl", "-sS", "--max-time", "5", "--cacert", K3S_ETCD.caFile, "--cert", K3S_ETCD.certFile, "--key", K3S_ETCD.keyFile, `${K3S_ETCD.endpoint}/health`);
  return script(
    `${quote(bin)} kubectl get --raw=/readyz >/dev/null 2>&1 || { echo "the API does not answer /readyz yet (k3s.service is $(systemctl is-active k3s))" >&2; exit 1; }\n${curl.shell}`,
    `${bin} kubectl get --raw=/readyz; curl ${K3S_ETCD.endpoint}/health`,
  );
}

const healthy = (r: { stdout: string }) => (/"health":\s*("true"|true)/.test(r.stdout) ? undefined : `etcd's /health says ${r.stdout.trim().slice(0, 120) || "nothing"}`);

/** The plan's first lines: what is restored, what is lost, what K3s needs, what agents do. */
export function restoreHeading(ctx: ClusterContext, s: Snapshot, now: Date): string {
  const servers = ctx.topo.servers.map((h) => h.name);
  const agents = ctx.topo.agents.map((h) => h.name);
  const [first, ...others] = servers;
  return [
    `Restore etcd from ${s.name} (taken ${s.takenAt.toISOString()}${s.node ? ` on ${s.node}` : ""}, SHA-256 ${s.sha256.slice(0, 12)}…), K3s's restore for several servers; it stops at the first failure:`,
    `  - every server's etcd data (${servers.join(", ")}) is replaced by the snapshot: what changed since it was taken is lost`,
    `  - ${first} restores it (K3s keeps its current data in ${K3S_DB_DIR}/etcd-old-<time>)${others.length ? `; ${others.join(", ")} rejoin with their data set aside in ${asideDir(now)}` : ""}`,
    "  - K3s decrypts the snapshot's bootstrap data with the server token in config.yaml: the token the cluster had when the snapshot was taken (fmc's k3s-token)",
    agents.length
      ? `  - agents ${agents.join(", ")} keep running: K3s's restore stops servers only, and each agent reconnects once the API answers again (no restart)`
      : "  - no agents",
    "",
  ].join("\n");
}

/** The question before it runs: it names what is destroyed. */
export function restoreQuestion(ctx: ClusterContext, s: Snapshot): string {
  return `Every server's current etcd data (${ctx.topo.servers.map((h) => h.name).join(", ")}) is replaced by ${s.name} taken ${s.takenAt.toISOString()}; what changed since is lost. Restore?`;
}

/**
 * The runbook, in K3s's order: check the snapshot here; upload it to the first server (the
 * reset server) and check it there; stop K3s on every server; reset and restore on the first;
 * start it and wait for its API and etcd; then each other server in turn: its database set
 * aside, K3s started, waited for until its member is a healthy voting member; last, etcd read
 * once more: every spec server a healthy voting member and no other member.
 * A snapshot without a readable .sha256 is refused here, before any step exists.
 */
export function restoreRunbook(ctx: ClusterContext, o: RestoreOptions): RunbookStep[] {
  const servers = ctx.topo.servers;
  if (servers.length === 0) throw new FmcError("USAGE", "the spec has no k3s-server hosts: there is no etcd to restore");
  const s = readSnapshot(o.snapshot);
  const access = o.access ?? etcdAccess();
  const waitS = o.waitS ?? SERVER_READY_S;
  const everyS = o.everyS ?? 2;
  const [first, ...others] = servers as [Host, ...Host[]];
  const remote = `${K3S_SNAPSHOT_DIR}/${s.name}`;
  const aside = asideDir(o.now);
  const steps: RunbookStep[] = [
    { title: `check ${s.name} against ${s.name}.sha256`, on: "this machine", act: () => verifySnapshot(s) },
    { title: `upload ${s.name} to ${first.name} (the server that restores it)`, on: first.name, command: uploadCommand(s, first.name) },
    ...servers.map((h): RunbookStep => ({ title: `stop K3s on ${h.name}`, on: h.name, command: cmd("systemctl", "stop", "k3s") })),
    {
      title: `restore ${s.name} on ${first.name}: K3s resets etcd to this one member, restores the snapshot, and exits`,
      on: first.name,
      command: resetCommand(ctx, binOf(o, first), remote),
      verify: (r) => (`${r.stdout}\n${r.stderr}`.includes(RESET_DONE) ? undefined : `K3s exited 0 without saying "${RESET_DONE}"`),
    },
    { title: `start K3s on ${first.name}`, on: first.name, command: startCommand() },
    { title: `wait until ${first.name}'s API answers /readyz and its etcd member is healthy`, on: first.name, command: readyCommand(binOf(o, first)), verify: healthy, until: { seconds: waitS, everyS } },
  ];
  for (const h of others) {
    steps.push(
      {
        title: `set ${h.name}'s database aside: ${K3S_DB_DIR} -> ${aside}`,
        on: h.name,
        command: script(
          [
            "set -eu",
            NOT_RUNNING,
            `if [ -e ${quote(aside)} ]; then echo ${quote(`${aside} exists already`)} >&2; exit 1; fi`,
            `if [ -d ${quote(K3S_DB_DIR)} ]; then mv ${quote(K3S_DB_DIR)} ${quote(aside)}; echo ${quote(`moved to ${aside}`)}; else echo ${quote(`no ${K3S_DB_DIR}: nothing to set aside`)}; fi`,
          ].join("\n"),
          `mv ${K3S_DB_DIR} ${aside}`,
        ),
      },
      { title: `start K3s on ${h.name}: it joins the restored cluster`, on: h.name, command: startCommand() },
      {
        title: `wait until ${h.name}'s API answers /readyz and its etcd member is a healthy voting member`,
        on: h.name,
        command: readyCommand(binOf(o, h)),
        verify: healthy,
        until: { seconds: waitS, everyS },
        act: (t) => untilVotingMember(t, access, h.name, waitS, everyS),
      },
    );
  }
  steps.push({
    title: `read etcd: every server (${servers.map((h) => h.name).join(", ")}) is a healthy voting member, and no other member is listed`,
    on: first.name,
    act: async (t) => {
      if (!t) throw new FmcError("UNREACHABLE", `${first.name} is not connected`);
      const v = await readCluster(t, access);
      const problems: string[] = [];
      for (const h of servers) {
        const m = v.members.find((x) => isMember(x, h.name));
        if (!m) problems.push(`${h.name} is not a member`);
        else if (m.isLearner) problems.push(`${h.name} is still a learner`);
        else if (!m.healthy) problems.push(`${h.name} is unhealthy (${m.reason ?? "no reason given"})`);
      }
      const extra = v.members.filter((m) => !servers.some((h) => isMember(m, h.name)));
      if (extra.length) problems.push(`etcd also lists ${extra.map(memberLabel).join(", ")}, which no spec server is`);
      if (problems.length) throw new FmcError("RESTORE_CHECK", `after the restore: ${problems.join("; ")}`, "fmc etcd status");
      const leader = v.members.find((m) => m.isLeader);
      return `etcd: ${v.members.length} healthy voting members (${v.members.map((m) => `${memberLabel(m)}${m === leader ? " leader" : ""}`).join(", ")})`;
    },
  });
  return steps;
}
