// The seam between the pure core and the machine: finds and reads the spec, resolves
// key files, loads or creates the secrets, and builds the render context.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { resolve } from "node:path";
import { loadSpec, hasErrors } from "./spec/load.js";
import { SEED_YAML } from "./spec/seed.js";
import { isPublicKey } from "./spec/checks.js";
import { Topology } from "./spec/topology.js";
import type { Spec } from "./spec/schema.js";
import { loadOrCreateSecrets, requiredSecrets, stateDirFor, type Secrets } from "./state/secrets.js";
import type { RenderContext } from "./render/types.js";
import { FmcError, type Problem } from "./errors.js";

export const DEFAULT_SPEC_FILE = "cluster.yaml";

export interface SpecSource {
  /** Absolute path, or undefined for the built-in seed topology. */
  readonly file?: string;
  readonly text: string;
}

/** -f FILE, else ./cluster.yaml when it exists, else the built-in seed topology. */
export function findSpec(file?: string): SpecSource {
  const path = file ?? (existsSync(DEFAULT_SPEC_FILE) ? DEFAULT_SPEC_FILE : undefined);
  if (path === undefined) return { text: SEED_YAML };
  const abs = resolve(path);
  if (!existsSync(abs)) throw new FmcError("SPEC_NOT_FOUND", `spec file ${path} does not exist`, "create one with: fmc init -o " + path);
  return { file: abs, text: readFileSync(abs, "utf8") };
}

const expandHome = (p: string) => (p.startsWith("~/") ? resolve(homedir(), p.slice(2)) : p);

export function readKeyFile(path: string, base?: string): string | undefined {
  const abs = resolve(base ?? process.cwd(), expandHome(path));
  return existsSync(abs) ? readFileSync(abs, "utf8") : undefined;
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
export function resolveKeys(spec: Spec, secrets: Secrets, base?: string): Map<string, string[]> {
  const global = keysFrom(spec.ssh.keys, base);
  const admin = secrets.adminPublicKey();
  return new Map(spec.hosts.map((h) => [h.name, [...new Set([...global, ...keysFrom(h.ssh?.keys ?? [], base), ...(admin ? [admin] : [])])]]));
}

export interface ContextOptions {
  readonly file?: string;
  readonly stateDir?: string;
}

/** Loads a valid spec and its secrets; invalid specs throw with every problem attached. */
export function context(options: ContextOptions = {}): { ctx: RenderContext; loaded: Loaded; stateDir: string } {
  const loaded = load(options.file);
  if (!loaded.spec || hasErrors(loaded.problems)) throw new InvalidSpec(loaded.problems);
  const state = stateDirFor(loaded.source.file, options.stateDir);
  const secrets = loadOrCreateSecrets(state, requiredSecrets(loaded.spec));
  const base = loaded.source.file ? resolve(loaded.source.file, "..") : undefined;
  const topo = new Topology(loaded.spec, resolveKeys(loaded.spec, secrets, base));
  return { ctx: { spec: loaded.spec, topo, secrets }, loaded, stateDir: state.path };
}

export class InvalidSpec extends FmcError {
  constructor(readonly problems: Problem[]) {
    super("SPEC_INVALID", `the spec has ${problems.filter((p) => p.severity === "error").length} error(s)`);
  }
}
