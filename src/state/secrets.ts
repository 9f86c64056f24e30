// Generated secrets live in the local state directory (.fmc/ next to the spec), mode
// 0600 in a 0700 directory with its own .gitignore. They are created once and reused,
// so renders are reproducible; renderers get values, logs get masks.
import { createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import ssh2 from "ssh2";
import type { Spec } from "../spec/schema.js";
import { FmcError } from "../errors.js";

export type SecretKind = "token" | "password" | "vrrp" | "wireguard" | "wireguard-psk" | "ssh-ed25519";

export interface SecretSpec {
  readonly name: string;
  readonly kind: SecretKind;
  readonly purpose: string;
}

/** Every secret a spec needs, in a stable order. */
export function requiredSecrets(spec: Spec): SecretSpec[] {
  const out: SecretSpec[] = [{ name: "k3s-token", kind: "token", purpose: "K3s cluster join token" }];
  for (const v of spec.vips) out.push({ name: `vrrp-${v.name}`, kind: "vrrp", purpose: `VRRP authentication of VIP ${v.name}` });
  if (spec.wireguard) {
    for (const h of spec.hosts.filter((x) => x.roles.includes("gateway") || x.name === spec.wireguard?.lanPeer)) {
      out.push({ name: `wireguard-${h.name}`, kind: "wireguard", purpose: `WireGuard private key of ${h.name}` });
    }
    out.push({ name: "wireguard-psk", kind: "wireguard-psk", purpose: "WireGuard preshared key of the tunnel" });
  }
  if (spec.database) {
    out.push({ name: "postgres-superuser", kind: "password", purpose: "PostgreSQL postgres user" });
    for (const d of spec.database.databases) out.push({ name: `postgres-${d}`, kind: "password", purpose: `PostgreSQL owner of database ${d}` });
  }
  if (spec.identity) {
    out.push({ name: "ipa-admin", kind: "password", purpose: "FreeIPA admin" });
    out.push({ name: "ipa-directory-manager", kind: "password", purpose: "FreeIPA Directory Manager" });
  }
  const svc = spec.services;
  if (svc.grafana.enabled) out.push({ name: "grafana-admin", kind: "password", purpose: "Grafana admin" });
  if (svc.redis.enabled) out.push({ name: "redis", kind: "password", purpose: "Redis AUTH" });
  if (svc.elasticsearch.enabled) out.push({ name: "elastic", kind: "password", purpose: "Elasticsearch elastic user" });
  if (spec.ssh.generatedKey) out.push({ name: "admin-ssh", kind: "ssh-ed25519", purpose: "fmc's admin SSH key" });
  return out;
}

/** Secret values by name, with the derived public parts renderers need. */
export class Secrets {
  constructor(private readonly values: ReadonlyMap<string, string>) {}

  get(name: string): string {
    const v = this.values.get(name);
    if (v === undefined) throw new Error(`internal: secret ${name} was not generated`);
    return v;
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** WireGuard public key (base64) of a host's private key. */
  wireguardPublic(host: string): string {
    return wireguardPublicKey(this.get(`wireguard-${host}`));
  }

  /** The admin key's OpenSSH public line. */
  adminPublicKey(): string | undefined {
    const v = this.values.get("admin-ssh");
    return v ? (JSON.parse(v) as { public: string }).public : undefined;
  }

  /** The admin key's OpenSSH private key, for fmc's own SSH connections. */
  adminPrivateKey(): string | undefined {
    const v = this.values.get("admin-ssh");
    return v ? (JSON.parse(v) as { private: string }).private : undefined;
  }

  /** Replaces every secret value in text with a mask naming it. */
  mask(text: string): string {
    let out = text;
    for (const [name, value] of this.values) {
      for (const part of secretParts(value)) if (part.length >= 6) out = out.split(part).join(`<secret:${name}>`);
    }
    return out;
  }

  /** Whether the text contains any secret value. */
  leaksInto(text: string): string[] {
    return [...this.values].filter(([, v]) => secretParts(v).some((p) => p.length >= 6 && text.includes(p))).map(([n]) => n);
  }
}

function secretParts(value: string): string[] {
  if (value.startsWith("{")) return [(JSON.parse(value) as { private: string }).private];
  return [value];
}

const X25519_PKCS8 = Buffer.from("302e020100300506032b656e04220420", "hex");

export function wireguardPublicKey(privateB64: string): string {
  const key = createPrivateKey({ key: Buffer.concat([X25519_PKCS8, Buffer.from(privateB64, "base64")]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  return spki.subarray(spki.length - 32).toString("base64");
}

function generate(kind: SecretKind): string {
  switch (kind) {
    case "token":
      return randomBytes(32).toString("hex");
    case "wireguard-psk":
      return randomBytes(32).toString("base64");
    case "password":
      return randomBytes(24).toString("base64url");
    case "vrrp":
      // keepalived's PASS authentication uses at most 8 characters.
      return randomBytes(6).toString("base64url");
    case "wireguard": {
      const k = randomBytes(32);
      k[0]! &= 248;
      k[31]! = (k[31]! & 127) | 64;
      return k.toString("base64");
    }
    case "ssh-ed25519": {
      const pair = ssh2.utils.generateKeyPairSync("ed25519", { comment: "fmc-admin" });
      return JSON.stringify({ private: pair.private, public: pair.public.trim() });
    }
  }
}

export interface StateDir {
  readonly path: string;
}

export function stateDirFor(specFile: string | undefined, override?: string): StateDir {
  if (override) return { path: override };
  const base = specFile ? join(specFile, "..") : process.cwd();
  return { path: join(base, ".fmc") };
}

function ensureStateDir(dir: StateDir) {
  mkdirSync(dir.path, { recursive: true, mode: 0o700 });
  chmodSync(dir.path, 0o700);
  const ignore = join(dir.path, ".gitignore");
  if (!existsSync(ignore)) writeFileSync(ignore, "# fmc state: secrets and locks. Never commit.\n*\n", { mode: 0o644 });
  refuseTrackedState(dir);
}

/** fmc refuses to run when git tracks anything in its state directory. */
function refuseTrackedState(dir: StateDir) {
  let tracked = "";
  try {
    tracked = execFileSync("git", ["ls-files", "--", "."], { cwd: dir.path, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return; // not a git work tree, or no git: nothing can be tracked
  }
  if (tracked) {
    throw new FmcError("STATE_TRACKED", `git tracks files in ${dir.path}: ${tracked.split("\n").join(", ")}`, `remove them from git (git rm --cached) and rotate the secrets they held`);
  }
}

/**
 * Loads the secrets a spec needs, generating and saving the missing ones. The file is
 * rewritten atomically (temp file + rename), so a crash never leaves half a store.
 */
export function loadOrCreateSecrets(dir: StateDir, needed: readonly SecretSpec[]): Secrets {
  ensureStateDir(dir);
  const file = join(dir.path, "secrets.json");
  let stored: Record<string, { kind: SecretKind; value: string }> = {};
  if (existsSync(file)) {
    try {
      stored = (JSON.parse(readFileSync(file, "utf8")) as { secrets: typeof stored }).secrets;
    } catch (e) {
      throw new FmcError("STATE_CORRUPT", `cannot read ${file}: ${(e as Error).message}`, "restore it from a backup; deleting it rotates every secret");
    }
  }
  let changed = false;
  for (const s of needed) {
    if (stored[s.name]?.kind === s.kind) continue;
    stored[s.name] = { kind: s.kind, value: generate(s.kind) };
    changed = true;
  }
  if (changed) {
    const tmp = `${file}.tmp-${process.pid}`;
    const sorted = Object.fromEntries(Object.entries(stored).sort(([a], [b]) => a.localeCompare(b)));
    writeFileSync(tmp, JSON.stringify({ version: 1, secrets: sorted }, null, 2) + "\n", { mode: 0o600 });
    renameSync(tmp, file);
  }
  chmodSync(file, 0o600);
  return new Secrets(new Map(needed.map((s) => [s.name, stored[s.name]!.value])));
}

/** Deterministic secrets for tests and benchmarks that must not touch disk. */
export function fixedSecrets(needed: readonly SecretSpec[], seed = "fmc"): Secrets {
  let n = 0;
  const fake = (s: SecretSpec): string => {
    const bytes = Buffer.alloc(32, `${seed}:${s.name}:${n++}`);
    if (s.kind === "wireguard-psk") return bytes.toString("base64");
    if (s.kind === "wireguard") {
      bytes[0]! &= 248;
      bytes[31]! = (bytes[31]! & 127) | 64;
      return bytes.toString("base64");
    }
    if (s.kind === "vrrp") return bytes.toString("base64url").slice(0, 8);
    if (s.kind === "ssh-ed25519") return JSON.stringify({ private: `fake-private-${s.name}`, public: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake fmc-admin" });
    return bytes.toString("hex");
  };
  return new Secrets(new Map(needed.map((s) => [s.name, fake(s)])));
}
