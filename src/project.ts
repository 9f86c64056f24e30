// The seam between the pure core and the machine: finds and reads the spec, resolves
// key files, loads or creates the secrets, and builds the render context.
import { closeSync, constants, existsSync, fstatSync, openSync, readSync } from "node:fs";
import { homedir } from "node:os";
import { resolve } from "node:path";
import { loadSpec, hasErrors } from "./model/load.js";
import { SEED_YAML } from "./model/seed.js";
import { isPublicKey } from "./model/checks.js";
import { Topology } from "./model/topology.js";
import type { Spec } from "./model/schema.js";
import { loadOrCreateSecrets, requiredSecrets, stateDirFor, type Secrets } from "./state/secrets.js";
import type { ClusterContext } from "./state/context.js";
import { isK3sBootstrapped } from "./state/bootstrap.js";
import { FmcError, type Problem } from "./errors.js";

export const DEFAULT_SPEC_FILE = "cluster.yaml";

export interface SpecSource {
  /** Absolute path, or undefined for the built-in seed topology. */
  readonly file?: string;
  readonly text: string;
}

/** The largest spec fmc reads: the seed is 9 KB; a 1,000-host spec is about 150 KB. */
const MAX_SPEC_BYTES = 1024 * 1024;
/** The largest public key file fmc reads (an authorized_keys-style list of keys). */
export const MAX_KEY_FILE_BYTES = 64 * 1024;

/**
 * Reads a small regular file as UTF-8, refusing anything else with a coded error: a
 * directory, a device (/dev/zero would grow without end), a FIFO (opened without
 * blocking), a symlink loop, an unreadable file, more than `max` bytes, invalid UTF-8.
 */
export function readSmallTextFile(path: string, what: string, max: number): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw fileError(e as NodeJS.ErrnoException, path, what);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new FmcError("FILE_NOT_REGULAR", `${what} ${path} is a directory`, "name a file");
    if (!st.isFile()) throw new FmcError("FILE_NOT_REGULAR", `${what} ${path} is not a regular file (a device, FIFO or socket)`, "name a regular file");
    if (st.size > max) throw new FmcError("FILE_TOO_LARGE", `${what} ${path} is ${st.size} bytes; the limit is ${max}`, "is this the right file?");
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (let got = -1; got !== 0 && n <= max; n += got) got = readSync(fd, buf, n, buf.length - n, null);
    if (n > max) throw new FmcError("FILE_TOO_LARGE", `${what} ${path} is larger than ${max} bytes`, "is this the right file?");
    return decodeUtf8(buf.subarray(0, n), path, what);
  } catch (e) {
    if (e instanceof FmcError) throw e;
    throw fileError(e as NodeJS.ErrnoException, path, what);
  } finally {
    closeSync(fd);
  }
}

function decodeUtf8(bytes: Buffer, path: string, what: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    // find the first bad byte for the message: decode growing prefixes is O(n^2); scan instead
    const at = firstInvalidUtf8(bytes);
    const before = bytes.subarray(0, at);
    const line = before.filter((b) => b === 0x0a).length + 1;
    throw new FmcError("FILE_ENCODING", `${what} ${path}: byte 0x${bytes[at]!.toString(16).padStart(2, "0")} at line ${line} is not valid UTF-8`, "save the file as UTF-8");
  }
}

/** Offset of the first byte that does not start or continue a valid UTF-8 sequence. */
function firstInvalidUtf8(b: Buffer): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    const len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len === 0 || i + len > b.length) return i;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(i, i + len));
    } catch {
      return i;
    }
    i += len;
  }
  return 0;
}

function fileError(e: NodeJS.ErrnoException, path: string, what: string): FmcError {
  switch (e.code) {
    case "ENOENT":
      return new FmcError("FILE_NOT_FOUND", `${what} ${path} does not exist`);
    case "ELOOP":
      return new FmcError("FILE_SYMLINK_LOOP", `${what} ${path} is a symlink loop`, "point the link at a real file");
    case "EACCES":
    case "EPERM":
      return new FmcError("FILE_UNREADABLE", `${what} ${path} is not readable by this user`, "check its permissions (ls -l)");
    case "EISDIR":
      return new FmcError("FILE_NOT_REGULAR", `${what} ${path} is a directory`, "name a file");
    case "ENOTDIR":
      return new FmcError("FILE_NOT_FOUND", `${what} ${path} does not exist (a parent is not a directory)`);
    case "ENAMETOOLONG":
      return new FmcError("FILE_NOT_FOUND", `${what} path is too long`);
    default:
      return new FmcError("FILE_IO", `${what} ${path}: ${e.message}`);
  }
}

/** -f FILE, else ./cluster.yaml when it exists, else the built-in seed topology. */
export function findSpec(file?: string): SpecSource {
  if (file === "") throw new FmcError("USAGE", "the spec file name is empty", "use -f cluster.yaml, or leave -f out for ./cluster.yaml or the built-in seed");
  const path = file ?? (existsSync(DEFAULT_SPEC_FILE) ? DEFAULT_SPEC_FILE : undefined);
  if (path === undefined) return { text: SEED_YAML };
  const abs = resolve(path);
  try {
    return { file: abs, text: readSmallTextFile(abs, "spec file", MAX_SPEC_BYTES) };
  } catch (e) {
    if (e instanceof FmcError && e.code === "FILE_NOT_FOUND") throw new FmcError("SPEC_NOT_FOUND", `spec file ${path} does not exist`, `create one with: fmc init -o ${path}`);
    throw e;
  }
}

const expandHome = (p: string) => (p.startsWith("~/") ? resolve(homedir(), p.slice(2)) : p);

/** A public key file named in the spec; undefined when it does not exist, coded errors otherwise. */
function readKeyFile(path: string, base?: string): string | undefined {
  const abs = resolve(base ?? process.cwd(), expandHome(path));
  try {
    return readSmallTextFile(abs, "key file", MAX_KEY_FILE_BYTES);
  } catch (e) {
    if (e instanceof FmcError && e.code === "FILE_NOT_FOUND") return undefined;
    throw e;
  }
}

export interface Loaded {
  readonly source: SpecSource;
  readonly spec?: Spec;
  readonly problems: Problem[];
}

export function load(file?: string): Loaded {
  const source = findSpec(file);
  const base = source.file ? resolve(source.file, "..") : undefined;
  const result = loadSpec(source.text, { readKeyFile: (p) => readKeyFile(p, base) });
  return { source, ...result };
}

function keysFrom(entries: readonly string[], base?: string): string[] {
  return entries.flatMap((k) => (isPublicKey(k) ? [k.trim()] : (readKeyFile(k, base) ?? "").split("\n").map((l) => l.trim()).filter(isPublicKey)));
}

/** Every host's public keys: the spec's global keys, its own, and fmc's admin key. */
function resolveKeys(spec: Spec, secrets: Secrets, base?: string): Map<string, string[]> {
  const global = keysFrom(spec.ssh.keys, base);
  const admin = secrets.adminPublicKey();
  return new Map(spec.hosts.map((h) => [h.name, [...new Set([...global, ...keysFrom(h.ssh?.keys ?? [], base), ...(admin ? [admin] : [])])]]));
}

export interface ContextOptions {
  readonly file?: string;
  readonly stateDir?: string;
}

/** Loads a valid spec and its secrets; invalid specs throw with every problem attached. */
export function context(options: ContextOptions = {}): { ctx: ClusterContext; loaded: Loaded; stateDir: string } {
  const loaded = load(options.file);
  if (!loaded.spec || hasErrors(loaded.problems)) throw new InvalidSpec(loaded.problems);
  const state = stateDirFor(loaded.source.file, options.stateDir);
  const secrets = loadOrCreateSecrets(state, requiredSecrets(loaded.spec));
  const base = loaded.source.file ? resolve(loaded.source.file, "..") : undefined;
  const topo = new Topology(loaded.spec, resolveKeys(loaded.spec, secrets, base));
  const k3sBootstrapped = isK3sBootstrapped(state, loaded.spec.name);
  return { ctx: { spec: loaded.spec, topo, secrets, k3sBootstrapped }, loaded, stateDir: state.path };
}

export class InvalidSpec extends FmcError {
  constructor(readonly problems: Problem[]) {
    super("SPEC_INVALID", `the spec has ${problems.filter((p) => p.severity === "error").length} error(s)`);
  }
}
