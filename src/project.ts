// The seam between the pure core and the machine: finds and reads the spec, resolves
// key files, loads or creates the secrets, and builds the render context.
import { existsSync } from "node:fs";
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
import { readSmallTextFile } from "./files.js";

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
