// The state directory (.fmc/ next to the spec) as the user running fmc can use it. A run
// as root (sudo fmc apply, fmc lab up) leaves root-owned files behind; a later run as
// another user must stop with what to do, never a stack trace or a half-done change. So
// every opening of the state directory checks that this user can read and write what is
// in it, and every file operation on it turns a permission error into STATE_PERMISSION
// with the fix.
import { accessSync, chmodSync, constants, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync, type Stats } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { spawnSync } from "node:child_process";
import { FmcError } from "../errors.js";
import { readSmallTextFile } from "../files.js";
import { quote } from "../shell.js";

/** How deep the access check looks: .fmc/lab/etcd/<file> is the deepest fmc writes to. */
const CHECK_DEPTH = 3;
/** Entries the access check looks at, at most (a K3s bundle is a handful of files). */
const CHECK_ENTRIES = 2000;

const uid = () => (typeof process.getuid === "function" ? process.getuid() : undefined);
const gid = () => (typeof process.getgid === "function" ? process.getgid() : undefined);

/** The coded error for a state path this user may not use, with the two ways out. */
export function statePermissionError(root: string, path: string, what: string): FmcError {
  let owner: number | undefined;
  let ofDirectory = false;
  try {
    owner = lstatSync(path).uid;
  } catch {
    try {
      owner = statSync(dirname(path)).uid; // a file that can't be created: its directory's owner
      ofDirectory = true;
    } catch {
      // unknown
    }
  }
  const me = uid();
  const who = owner === 0 ? "root" : `uid ${owner}`;
  const ownedBy = owner === undefined ? "" : ` (${ofDirectory ? "its directory is " : ""}owned by ${who}${me === undefined ? "" : `; you are uid ${me}`})`;
  const mine = me === undefined ? '"$(id -u):$(id -g)"' : `${me}:${gid()}`;
  const dir = quote(root); // one word of the command the user copies
  const hint =
    owner !== undefined && owner !== me
      ? `a run as ${who}${owner === 0 ? " (sudo)" : ""} left it: run fmc as ${who} again, or give the state directory back to yourself, as root: chown -R ${mine} ${dir}`
      : `give yourself read and write access to it, as root: chown -R ${mine} ${dir} && chmod -R u+rwX ${dir}`;
  return new FmcError("STATE_PERMISSION", `cannot ${what} ${path}${ownedBy}: permission denied`, hint);
}

/**
 * Runs a file operation on the state directory `root`: permission problems become
 * STATE_PERMISSION (with the fix), anything else STATE_IO; FmcErrors pass through.
 */
export function stateIo<T>(root: string, path: string, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof FmcError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === "EACCES" || err.code === "EPERM") throw statePermissionError(root, path, what);
    throw new FmcError("STATE_IO", `cannot ${what} ${path}: ${err.message}`, "check that the state directory is a writable local directory");
  }
}

/** The largest state file fmc reads back: a store with every secret of a 1,000-host spec is a fraction of it. */
const MAX_STATE_FILE_BYTES = 1024 * 1024;

/**
 * A file fmc wrote into the state directory `root`, read back through the spec file's
 * guards (a FIFO, a link to /dev/zero, a file of gigabytes are refused, never read):
 * undefined when it does not exist. Not fmc's kind of file: STATE_CORRUPT, naming it.
 */
export function readStateFile(root: string, file: string, what: string, max = MAX_STATE_FILE_BYTES): string | undefined {
  try {
    return readSmallTextFile(file, what, max);
  } catch (e) {
    if (!(e instanceof FmcError)) throw e;
    if (e.code === "FILE_NOT_FOUND") return undefined;
    if (e.code === "FILE_UNREADABLE") throw statePermissionError(root, file, "read");
    if (e.code === "FILE_IO") throw new FmcError("STATE_IO", e.message, "check that the state directory is a readable local directory");
    throw new FmcError("STATE_CORRUPT", e.message, `fmc writes it as a small regular file: remove ${quote(file)} (or restore it from a backup)`);
  }
}

/** stateIo for a file directly in the state directory (the secret stores). */
export const stateFileIo = <T>(file: string, what: string, fn: () => T): T => stateIo(dirname(file), file, what, fn);

/**
 * Refuses, before anything is read or changed, a state directory holding something another
 * user left that this user can't read and write (directories: and enter). Root can use
 * everything: no check.
 */
export function checkStateAccess(root: string): void {
  const me = uid();
  if (me === 0 || me === undefined || !existsSync(root)) return;
  let seen = 0;
  const visit = (path: string, depth: number): void => {
    if (++seen > CHECK_ENTRIES) return;
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return; // gone meanwhile, or its directory is unreadable (reported for the directory)
    }
    if (st.isSymbolicLink()) return;
    const dir = st.isDirectory();
    // what a run as another user (root, through sudo) left; this user's own files are fmc's
    if (st.uid !== me) {
      try {
        accessSync(path, constants.R_OK | constants.W_OK | (dir ? constants.X_OK : 0));
      } catch {
        throw statePermissionError(root, path, dir ? "use the directory" : "read and write");
      }
    }
    if (!dir || depth >= CHECK_DEPTH) return;
    let names: string[] = [];
    try {
      names = readdirSync(path);
    } catch {
      // this user's own directory, unreadable by its own choice: the operation on it will say
    }
    for (const name of names) visit(join(path, name), depth + 1);
  };
  visit(root, 0);
}

/** The nearest directory at or above `start` that holds a .git (directory or file). */
function gitWorkTree(start: string): string | undefined {
  for (let d = resolve(start); ; d = dirname(d)) {
    if (existsSync(join(d, ".git"))) return d;
    if (dirname(d) === d) return undefined;
  }
}

/**
 * fmc refuses to run when git tracks anything in its state directory. The check fails
 * closed: inside a git work tree, any git error (not installed, a repository owned by
 * another user, a broken index) refuses, because then nothing proves the secrets are untracked.
 */
function refuseTrackedState(root: string): void {
  const tree = gitWorkTree(root);
  if (!tree) return; // no repository around: nothing can be tracked
  const r = spawnSync("git", ["ls-files", "--", "."], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, GIT_OPTIONAL_LOCKS: "0" } });
  if (r.error || r.status !== 0) {
    const why = r.error ? ((r.error as NodeJS.ErrnoException).code === "ENOENT" ? "git is not installed" : r.error.message) : (r.stderr.trim().split("\n")[0] ?? `git exited ${r.status}`);
    const dubious = /dubious ownership/.test(r.stderr ?? "");
    throw new FmcError(
      "STATE_CHECK",
      `${tree} is a git work tree, and git could not confirm that ${root} is untracked: ${why}`,
      dubious ? `the repository belongs to another user; run fmc as its owner, or trust it: git config --global --add safe.directory ${tree}` : "fix git (or move the spec out of the repository), then run fmc again",
    );
  }
  const tracked = r.stdout.trim();
  if (tracked) {
    throw new FmcError("STATE_TRACKED", `git tracks files in ${root}: ${tracked.split("\n").join(", ")}`, `remove them from git (git rm --cached) and rotate the secrets they held`);
  }
}

/** The first line of the .gitignore fmc writes into a state directory; it marks the directory as fmc's. */
const MARKER_LINE = "# fmc state: secrets and locks. Never commit.";
/** Read no further than this into a .gitignore to find the marker. */
const MARKER_MAX_BYTES = 4096;

/**
 * Whether the existing directory `root` (lstat `st`) is fmc's to secure and write into:
 * named .fmc (the default; older fmc, and fmc bundle, made it without the marker), or
 * holding the marker written by the directory's owner (one planted in a shared directory
 * does not count), or empty and writable by this user alone (mktemp -d), as good as new.
 */
function isFmcStateDir(root: string, st: Stats): boolean {
  if (basename(root) === ".fmc") return true;
  const marker = join(root, ".gitignore");
  const m = stateIo(root, marker, "read", () => lstatSync(marker, { throwIfNoEntry: false }));
  if (m) {
    if (!m.isFile() || m.uid !== st.uid || m.size > MARKER_MAX_BYTES) return false;
    return stateIo(root, marker, "read", () => readFileSync(marker, "utf8")).startsWith(`${MARKER_LINE}\n`);
  }
  return st.uid === uid() && (st.mode & 0o7022) === 0 && stateIo(root, root, "read", () => readdirSync(root)).length === 0;
}

/**
 * The state directory as fmc may use it: created (0700) when missing, else one that is
 * already fmc's. fmc chmods its state directory 0700 and writes secrets into it, so a
 * directory it did not make (a 1777 shared one, --state /tmp as root) is refused before
 * either happens, and so is a symlink (a committed .fmc link would send secrets, and the
 * chmod, wherever it points).
 */
function claimStateDir(root: string): void {
  const abs = resolve(root); // no trailing "/": lstat must see a link, not its target
  let st = stateIo(root, root, "inspect", () => lstatSync(abs, { throwIfNoEntry: false }));
  if (!st) {
    const made = stateIo(root, root, "create", () => {
      mkdirSync(dirname(abs), { recursive: true });
      try {
        mkdirSync(abs, { mode: 0o700 });
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
        throw e;
      }
    });
    if (made) return; // made here: fmc's
    st = stateIo(root, root, "inspect", () => lstatSync(abs)); // made meanwhile, by whoever: judged below
  }
  if (st.isSymbolicLink()) {
    let real: string | undefined;
    try {
      real = realpathSync(abs);
    } catch {
      // dangling or a loop: nothing to name
    }
    throw new FmcError(
      "STATE_SYMLINK",
      `the state directory ${root} is a symlink${real ? ` to ${real}` : ""}; fmc keeps secrets only in a real directory, never where a link (one a repository can carry) points`,
      basename(abs) === ".fmc" ? `remove the link (rm ${quote(abs)}) and fmc creates .fmc on the next run; or name a directory with --state` : `name a real directory with --state${real ? `, e.g. --state ${quote(real)}` : ""}`,
    );
  }
  if (!st.isDirectory()) throw new FmcError("STATE_NOT_DIR", `the state directory ${root} is not a directory`, "name a directory with --state (fmc creates it when missing)");
  if (!isFmcStateDir(abs, st)) {
    throw new FmcError(
      "STATE_NOT_FMC",
      `${root} is not a state directory fmc made (no ${join(root, ".gitignore")} starting "${MARKER_LINE}"); fmc would make it 0700 and keep secrets in it`,
      `name a directory that does not exist yet and fmc creates it: --state ${quote(join(abs, "fmc-state"))}`,
    );
  }
}

/**
 * Opens the state directory for secrets: created 0700 if missing (an existing one must be
 * fmc's), usable by this user, ignored by git (its own .gitignore, which also marks it as
 * fmc's), and refused if git tracks anything in it.
 */
export function openStateDir(root: string): void {
  claimStateDir(root);
  checkStateAccess(root);
  stateIo(root, root, "secure", () => chmodSync(root, 0o700));
  const ignore = join(root, ".gitignore");
  if (!existsSync(ignore)) stateIo(root, ignore, "write", () => writeFileSync(ignore, `${MARKER_LINE}\n*\n`, { mode: 0o644 }));
  refuseTrackedState(root);
}
