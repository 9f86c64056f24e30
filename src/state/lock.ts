// One command that changes hosts at a time per cluster: apply and every day-2 runbook take the
// same lock file, <stateDir>/hosts.lock (an apply during a restore would start K3s again
// mid-restore; two runbooks could restart two servers at once). Other named locks (secrets)
// work the same way. A lock file holds {pid, host, token, started, what, command}: the holder
// is named in a refusal. Why this is safe against concurrent fmc processes:
// - A lock file appears complete or not at all: the record is written to a temp file that is
//   then hard-linked to the lock path; link() fails with EEXIST if the path exists.
// - Only a lock whose pid is dead on this host is stale; one that does not parse or comes from
//   another host can't be judged and counts as held.
// - Deleting a stale lock is the racy step, so only the owner of the marker
//   <lock>.takeover-<token> may do it. The marker is itself taken like a lock (one left by a
//   process that died mid-takeover is taken over the same way, one level deeper). The marker
//   owner deletes the lock only if it still holds the exact stale content; tokens are random,
//   so a lock created since never matches. After that, link() picks exactly one winner.
// - Release deletes the lock only if it still carries this acquisition's token. Nobody else
//   deletes a lock whose holder is alive, so it can't change between that check and the delete.
import { linkSync, mkdirSync, unlinkSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { z } from "zod";
import { FmcError } from "../errors.js";
import { readSmallTextFile } from "../files.js";
import { quote } from "../shell.js";
import { checkStateAccess, statePermissionError } from "./dir.js";

export interface Lock {
  release(): void;
}

/** The lock of every command that changes hosts, whatever the command: <stateDir>/hosts.lock. */
export const HOSTS_LOCK = "hosts";

/** Who takes a lock, for the refusal another command gets. */
export interface LockHolder {
  /** The operation: "apply", "node remove". */
  readonly what?: string;
  /** The command line, secrets masked: "fmc node remove master2 --yes". */
  readonly command?: string;
}

const LockFile = z.object({
  pid: z.number().int().positive().max(2 ** 31 - 1),
  host: z.string().min(1),
  token: z.string().regex(/^[0-9a-f]{16,64}$/), // becomes part of the marker's file name
  started: z.string(),
  // absent in locks written before they were recorded
  what: z.string().max(200).optional(),
  command: z.string().max(2000).optional(),
});
type LockFile = z.infer<typeof LockFile>;

/** Markers of markers: each level needs a process that died in the middle of a takeover. */
const MAX_DEPTH = 3;
/** How long to wait for someone else's takeover, which normally lasts microseconds. */
const TAKEOVER_WAIT_MS = 3000;

type Outcome =
  | { kind: "mine"; token: string }
  | { kind: "held"; file: string; holder: LockFile }
  | { kind: "invalid"; file: string }
  | { kind: "stuck"; file: string };

/** This process's command line as people typed it (fmc's own arguments), masked. */
export function commandLine(mask: (text: string) => string = (t) => t): string {
  const [, script, ...args] = process.argv;
  const program = script === undefined ? "node" : /(^|\/)fmc(\.js)?$/.test(script) ? "fmc" : basename(script);
  return mask([program, ...args.map(quote)].join(" "));
}

/**
 * Takes the lock `name` (default: the hosts lock), or throws LOCKED naming its holder's
 * operation, command line and pid; with waitMs, keeps trying that long while another holds it.
 */
export function acquireLock(stateDir: string, name = HOSTS_LOCK, waitMs = 0, holder: LockHolder = {}): Lock {
  io(stateDir, "create the state directory", () => mkdirSync(stateDir, { recursive: true, mode: 0o700 }), stateDir);
  checkStateAccess(stateDir);
  const path = join(stateDir, `${name}.lock`);
  const what = holder.what ?? (name === HOSTS_LOCK ? "apply" : name);
  const me = { what: what.slice(0, 200), command: (holder.command ?? commandLine()).slice(0, 2000) };
  const waitUntil = Date.now() + waitMs;
  let r = take(path, me, 0, Date.now() + TAKEOVER_WAIT_MS);
  while (r.kind !== "mine" && Date.now() < waitUntil) {
    sleep(25);
    r = take(path, me, 0, Date.now() + TAKEOVER_WAIT_MS);
  }
  switch (r.kind) {
    case "mine":
      return { release: () => release(path, r.token) };
    case "held": {
      const h = r.holder;
      const local = h.host === hostname();
      const other = h.what ?? what;
      const cmd = h.command ? `: ${h.command}` : "";
      // a different operation on the same lock: say why it waits
      const why = name !== HOSTS_LOCK || other === what ? "" : `; fmc ${what} changes the same hosts, so it does not run meanwhile`;
      if (r.file === path) {
        throw new FmcError(
          "LOCKED",
          local ? `another fmc ${other} is running (pid ${h.pid}, since ${h.started}${cmd})${why}` : `another fmc ${other} holds the lock (pid ${h.pid} on host ${h.host}, since ${h.started}${cmd})${why}`,
          local ? `wait for it to finish; if no fmc runs, remove ${path}` : `the state directory is shared with ${h.host}; if no fmc runs there, remove ${path}`,
        );
      }
      throw new FmcError(
        "LOCKED",
        `another fmc ${other} is taking over a stale lock (pid ${h.pid}${local ? "" : ` on host ${h.host}`}, since ${h.started}${cmd})`,
        `try again; if no fmc runs, remove ${path} and ${r.file}`,
      );
    }
    case "invalid":
      throw new FmcError("LOCKED", `${r.file} is not a valid fmc lock file; it counts as held`, `if no fmc ${what} runs, remove ${r.file}`);
    case "stuck":
      throw new FmcError("LOCKED", `too many abandoned takeovers of ${path}`, `if no fmc ${what} runs, remove ${path} and ${path}.takeover-*`);
  }
}

/** Creates the lock file at path, taking over a stale one; never throws LOCKED itself. */
function take(path: string, me: LockHolder, depth: number, deadline: number): Outcome {
  for (;;) {
    const token = randomBytes(16).toString("hex");
    const record: LockFile = { pid: process.pid, host: hostname(), token, started: new Date().toISOString(), ...me };
    if (create(path, JSON.stringify(record), token)) return { kind: "mine", token };
    const raw = read(path);
    if (raw === undefined) continue; // released meanwhile: try again
    const holder = parse(raw);
    if (!holder) return { kind: "invalid", file: path };
    if (holder.host !== hostname() || alive(holder.pid)) return { kind: "held", file: path, holder };
    if (depth >= MAX_DEPTH) return { kind: "stuck", file: path };
    const marker = `${path}.takeover-${holder.token}`;
    const m = take(marker, me, depth + 1, deadline);
    if (m.kind === "mine") {
      try {
        if (read(path) === raw) remove(path);
      } finally {
        release(marker, m.token);
      }
      continue; // the path is free (or someone else was faster): link() decides
    }
    if (m.kind !== "held" || Date.now() > deadline) return m;
    sleep(1 + Math.random() * 5); // another process is taking it over right now
  }
}

function release(path: string, token: string): void {
  const raw = read(path);
  if (raw !== undefined && parse(raw)?.token === token) remove(path);
}

function parse(raw: string): LockFile | undefined {
  try {
    const r = LockFile.safeParse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ESRCH"; // EPERM: alive, owned by another user
  }
}

/** Writes content to a temp file and links it to path: false if path exists. */
function create(path: string, content: string, token: string): boolean {
  const tmp = `${path}.tmp-${token}`;
  io(tmp, "write", () => writeFileSync(tmp, content, { flag: "wx", mode: 0o600 }));
  try {
    return io(path, "create", () => {
      try {
        linkSync(tmp, path);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
        throw e;
      }
    });
  } finally {
    remove(tmp);
  }
}

/** A lock file is a line of JSON: anything longer is not one of fmc's. */
const MAX_LOCK_BYTES = 64 * 1024;

/**
 * The lock file's text, undefined when there is none. Read with the spec file's guards: a
 * FIFO, a device or an oversized file is not a lock fmc wrote, so it reads as "" (invalid:
 * counts as held, and the refusal names it), never as a read that hangs or has no end.
 */
function read(path: string): string | undefined {
  try {
    return readSmallTextFile(path, "lock file", MAX_LOCK_BYTES);
  } catch (e) {
    if (!(e instanceof FmcError)) throw e;
    if (e.code === "FILE_NOT_FOUND") return undefined;
    if (e.code === "FILE_UNREADABLE") throw statePermissionError(dirname(path), path, "read");
    if (e.code === "FILE_IO") throw new FmcError("LOCK_IO", e.message, "check that the state directory is a writable local directory");
    return "";
  }
}

function remove(path: string): void {
  io(path, "remove", () => {
    try {
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  });
}

/** A file operation on the lock files, which sit directly in the state directory (`root`). */
function io<T>(path: string, action: string, fn: () => T, root = dirname(path)): T {
  try {
    return fn();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") throw statePermissionError(root, path, action);
    throw new FmcError("LOCK_IO", `cannot ${action} ${path}: ${(e as Error).message}`, "check that the state directory is a writable local directory");
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
