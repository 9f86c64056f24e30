// The lock every command that changes hosts takes (apply and every day-2 runbook), in two
// places: the state directory's hosts.lock (one fmc at a time per checkout: src/state/lock.ts)
// and a lock file on each host the command reaches, so two operators on two machines, with two
// state directories, can't change the same hosts at once (as k0sctl does: phase/lock.go).
//
// On a host: /run/fmc.lock (tmpfs: a reboot, which ends any command, clears it), a one-line
// JSON record naming the operator's machine, state directory, command, pid and start. It is
// written atomically (temp file, rename) and only under flock(1) on a guard file beside it, so
// the check-then-write of two fmc processes can't interleave. A lock whose file was not
// touched for HOST_LOCK_STALE_S (by the host's own clock: no skew between operators) is
// stale and taken over, and the output says so; the holder refreshes it every
// HOST_LOCK_REFRESH_MS while it runs, and removes it at the end, also on failure. A lock left by
// a dead fmc of this machine and state directory is taken over at once.
import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { z } from "zod";
import { FmcError } from "../errors.js";
import { script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { Transport } from "../hosts/transport.js";
import { acquireLock, commandLine, HOSTS_LOCK } from "../state/lock.js";
import { pool } from "./run.js";

export const HOST_LOCK_PATH = "/run/fmc.lock";
/** A host lock not refreshed for this long belongs to an fmc that is gone. */
export const HOST_LOCK_STALE_S = 300;
/** How often a running command touches its host locks: several times within the stale time. */
const HOST_LOCK_REFRESH_MS = 60_000;

export interface HostsLockOptions {
  readonly stateDir: string;
  /** The hosts to lock: every connected host of the command. */
  readonly transports: ReadonlyMap<string, Transport>;
  /** The operation: "apply", "node remove". */
  readonly what: string;
  /** The command line, secrets masked (default: this process's). */
  readonly command?: string;
  /** Takeovers of stale locks, and refreshes or releases that failed. */
  readonly report?: (line: string) => void;
  /** Tests: another path, stale time and refresh period. */
  readonly path?: string;
  readonly staleS?: number;
  readonly refreshMs?: number;
}

export interface HostsLock {
  /** Removes the host locks (a failure is reported, never thrown), then the state directory's. */
  release(): Promise<void>;
}

const HostLockRecord = z.object({
  token: z.string().regex(/^[0-9a-f]{32}$/),
  operator: z.string(),
  stateDir: z.string(),
  stateId: z.string(),
  what: z.string(),
  command: z.string(),
  pid: z.number().int().positive(),
  started: z.string(),
});
export type HostLockRecord = z.infer<typeof HostLockRecord>;

/** Which state directory on which machine: two checkouts on one machine are two operators. */
export const stateId = (stateDir: string): string => createHash("sha256").update(`${hostname()}\0${resolve(stateDir)}`).digest("hex").slice(0, 12);

/** The guard every script takes first: all fmc changes to the lock file are serialised by it. */
const guarded = (path: string, body: string) =>
  [
    "set -u",
    `lock=${quote(path)}`,
    'command -v flock >/dev/null 2>&1 || { echo "flock(1) is not installed (util-linux)" >&2; exit 5; }',
    // the guard file is never removed: removing a flock'ed file lets two holders in
    'exec 9>>"$lock.guard" || exit 2',
    'flock -w 10 9 || { echo "another fmc held the guard of $lock for 10 s" >&2; exit 4; }',
    body,
  ].join("\n");

/**
 * Takes the host's lock for `record`: prints `taken`, or `stale AGE` then the old record then
 * `taken`, or (exit 3) `held AGE` then the holder's record. `takeover` is the token of a lock
 * fmc judged stale itself (a dead fmc of this machine and state directory): taken whatever its age.
 */
function hostLockAcquire(path: string, record: HostLockRecord, staleS: number, takeover?: string): Command {
  const body = [
    `token=${quote(record.token)} stale=${quote(String(staleS))} takeover=${quote(takeover ?? "")}`,
    'rec=$(cat)',
    'if [ -e "$lock" ]; then',
    '  age=$(( $(date +%s) - $(stat -c %Y -- "$lock") ))',
    '  mine=no; grep -qF -- "\\"token\\":\\"$token\\"" "$lock" && mine=yes',
    '  theirs=no; [ -n "$takeover" ] && grep -qF -- "\\"token\\":\\"$takeover\\"" "$lock" && theirs=yes',
    '  if [ "$mine" = no ] && [ "$theirs" = no ]; then',
    '    if [ "$age" -lt "$stale" ]; then echo "held $age"; head -n 1 -- "$lock" | head -c 4096 | tr -d "\\n"; echo; exit 3; fi',
    '    echo "stale $age"; head -n 1 -- "$lock" | head -c 4096 | tr -d "\\n"; echo',
    '  elif [ "$theirs" = yes ]; then',
    '    echo "stale $age"; head -n 1 -- "$lock" | head -c 4096 | tr -d "\\n"; echo',
    "  fi",
    "fi",
    "umask 077",
    'tmp="$lock.tmp-$token"',
    'printf \'%s\\n\' "$rec" > "$tmp" && mv -f -- "$tmp" "$lock" || { rm -f -- "$tmp"; exit 2; }',
    "echo taken",
  ].join("\n");
  return script(guarded(path, body), `lock ${path} for fmc ${record.what} (pid ${record.pid} on ${record.operator})`, { data: JSON.stringify(record) });
}

/** Touches the lock if it is still this token's: prints `ok`, or `lost` and whatever holds it now. */
function hostLockRefresh(path: string, token: string): Command {
  const body = [
    `token=${quote(token)}`,
    'if grep -qF -- "\\"token\\":\\"$token\\"" "$lock" 2>/dev/null; then touch -c -- "$lock" && echo ok; else echo lost; head -n 1 -- "$lock" 2>/dev/null | head -c 4096 | tr -d "\\n"; echo; fi',
  ].join("\n");
  return script(guarded(path, body), `refresh ${path}`);
}

/** Removes the lock if it is still this token's: prints `released`, or `lost`. */
function hostLockRelease(path: string, token: string): Command {
  const body = [`token=${quote(token)}`, 'if grep -qF -- "\\"token\\":\\"$token\\"" "$lock" 2>/dev/null; then rm -f -- "$lock" && echo released; else echo lost; fi'].join("\n");
  return script(guarded(path, body), `unlock ${path}`);
}

function parseRecord(line: string | undefined): HostLockRecord | undefined {
  try {
    const r = HostLockRecord.safeParse(JSON.parse(line ?? ""));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** "fmc node remove master2 (pid 123 on laptop, state /home/x/.fmc, since …)" */
function holderText(r: HostLockRecord | undefined, raw: string | undefined): string {
  if (!r) return `an unreadable lock (${JSON.stringify((raw ?? "").slice(0, 200))})`;
  return `${r.command} (fmc ${r.what}, pid ${r.pid} on ${r.operator}, state ${r.stateDir}, since ${r.started})`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

type HostOutcome = { kind: "taken"; staleFrom?: string } | { kind: "held"; holder: string };

async function lockOne(t: Transport, path: string, record: HostLockRecord, staleS: number): Promise<HostOutcome> {
  const attempt = async (takeover?: string) => {
    const r = await t.exec(hostLockAcquire(path, record, staleS, takeover), "lock the host");
    const lines = r.stdout.split("\n");
    if (r.code === 3 && lines[0]?.startsWith("held ")) return { code: 3, age: Number(lines[0].slice(5)), raw: lines[1], rec: parseRecord(lines[1]) };
    if (r.code !== 0 || lines.at(-2) !== "taken") throw new FmcError("HOST_LOCK", `${t.host}: could not lock ${path} (exit ${r.code})${r.stderr.trim() ? `: ${r.stderr.trim()}` : ""}`);
    const stale = lines[0]?.startsWith("stale ") ? { age: Number(lines[0].slice(6)), raw: lines[1], rec: parseRecord(lines[1]) } : undefined;
    return { code: 0, stale };
  };
  const first = await attempt();
  if (first.code === 0) return { kind: "taken", ...(first.stale ? { staleFrom: `${holderText(first.stale.rec, first.stale.raw)}, not refreshed for ${first.stale.age} s` } : {}) };
  const held = first as { age: number; raw?: string; rec?: HostLockRecord };
  // one of ours whose process is gone: no need to wait until it goes stale
  if (held.rec && held.rec.stateId === record.stateId && held.rec.operator === record.operator && !alive(held.rec.pid)) {
    const again = await attempt(held.rec.token);
    if (again.code === 0) return { kind: "taken", staleFrom: `${holderText(held.rec, held.raw)}, whose process is gone` };
    const h = again as { age: number; raw?: string; rec?: HostLockRecord };
    return { kind: "held", holder: `${holderText(h.rec, h.raw)}, refreshed ${h.age} s ago` };
  }
  return { kind: "held", holder: `${holderText(held.rec, held.raw)}, refreshed ${held.age} s ago` };
}

/**
 * Takes the state directory's hosts lock, then the lock on every host in `transports`; refuses
 * (LOCKED, HOST_LOCKED) naming the holder, leaving nothing of its own behind. While held, the
 * host locks are refreshed in the background.
 */
export async function lockHosts(o: HostsLockOptions): Promise<HostsLock> {
  const path = o.path ?? HOST_LOCK_PATH;
  const staleS = o.staleS ?? HOST_LOCK_STALE_S;
  const report = o.report ?? (() => {});
  const command = o.command ?? commandLine();
  const local = acquireLock(o.stateDir, HOSTS_LOCK, 0, { what: o.what, command });
  const record: HostLockRecord = {
    token: randomBytes(16).toString("hex"),
    operator: hostname(),
    stateDir: resolve(o.stateDir),
    stateId: stateId(o.stateDir),
    what: o.what,
    command,
    pid: process.pid,
    started: new Date().toISOString(),
  };
  const hosts = [...o.transports.values()];
  const held = new Set<Transport>();
  const releaseHosts = async () => {
    await pool([...held], hosts.length || 1, async (t) => {
      try {
        const r = await t.exec(hostLockRelease(path, record.token), "unlock the host");
        if (r.code !== 0) report(`${t.host}: could not remove fmc's lock ${path} (exit ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ""}); it goes stale after ${staleS} s`);
        else if (r.stdout.trim() === "lost") report(`${t.host}: fmc's lock ${path} had been taken over by another fmc meanwhile`);
      } catch (e) {
        report(`${t.host}: could not remove fmc's lock ${path} (${(e as Error).message}); it goes stale after ${staleS} s`);
      }
    });
    held.clear();
  };
  try {
    const refusals: string[] = [];
    const failures: string[] = [];
    const results = await pool(hosts, hosts.length || 1, async (t) => {
      const r = await lockOne(t, path, record, staleS);
      if (r.kind === "taken") {
        held.add(t);
        if (r.staleFrom) report(`${t.host}: took over a stale lock ${path} of ${r.staleFrom}`);
      } else refusals.push(`${t.host}: ${path} is held by ${r.holder}`);
    });
    for (const r of results) if (r.status === "rejected") failures.push((r.reason as Error).message);
    if (refusals.length || failures.length) {
      await releaseHosts();
      if (refusals.length)
        throw new FmcError(
          "HOST_LOCKED",
          `another fmc is changing ${refusals.length === 1 ? "a host" : `${refusals.length} hosts`} this fmc ${o.what} needs:\n${[...refusals.sort(), ...failures].map((l) => `  ${l}`).join("\n")}`,
          `wait for it to finish; a lock not refreshed for ${staleS} s is taken over (if that fmc is gone, remove ${path} on the host to go on now)`,
        );
      throw new FmcError("HOST_LOCK", `could not lock the hosts; nothing was changed:\n${failures.map((l) => `  ${l}`).join("\n")}`, "fix the cause and run the command again");
    }
  } catch (e) {
    local.release();
    throw e;
  }
  // refreshed in the background while the command runs; never keeps fmc alive by itself
  let inFlight: Promise<unknown> | undefined;
  const lost = new Set<string>();
  const refresh = () => {
    if (inFlight) return;
    inFlight = pool([...held], hosts.length || 1, async (t) => {
      try {
        const r = await t.exec(hostLockRefresh(path, record.token), "refresh the host's lock");
        if (r.code !== 0) report(`${t.host}: could not refresh fmc's lock ${path} (exit ${r.code}); another fmc may take it over after ${staleS} s`);
        else if (r.stdout.startsWith("lost") && !lost.has(t.host)) {
          lost.add(t.host);
          const line = r.stdout.split("\n")[1];
          report(`${t.host}: fmc's lock ${path} is gone${line ? `, now held by ${holderText(parseRecord(line), line)}` : ""}: another fmc may be changing this host`);
        }
      } catch (e) {
        report(`${t.host}: could not refresh fmc's lock ${path} (${(e as Error).message})`);
      }
    }).finally(() => (inFlight = undefined));
  };
  const timer = setInterval(refresh, o.refreshMs ?? HOST_LOCK_REFRESH_MS);
  timer.unref();
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      try {
        await inFlight;
        await releaseHosts();
      } finally {
        local.release();
      }
    },
  };
}
