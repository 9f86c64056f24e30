// Generated secrets live in the local state directory (.fmc/ next to the spec), mode
// 0600 in a 0700 directory with its own .gitignore. They are created once and reused,
// so renders are reproducible; renderers get values, logs get masks.
import { createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { chmodSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { z } from "zod";
import type { Spec } from "../model/schema.js";
import { FmcError } from "../errors.js";
import { acquireLock } from "./lock.js";
import { parseStored } from "./stored.js";
import { openStateDir, readStateFile, stateFileIo } from "./dir.js";

/** The comment of fmc's generated admin keys; authorized_keys handling recognises them by it. */
export const ADMIN_KEY_COMMENT = "fmc-admin";

const SECRET_KINDS = ["token", "password", "vrrp", "wireguard", "wireguard-psk", "ssh-ed25519"] as const;
export type SecretKind = (typeof SECRET_KINDS)[number];

/** What each kind of secret looks like as fmc generates it: a tampered store is refused, never rendered. */
/** ssh2's key helpers, loaded on first use: the library costs about 40 ms to load, and
 *  commands that never touch an SSH key (validate, render --help) should not pay it. */
const sshUtils = (): typeof import("ssh2").utils => (createRequire(import.meta.url)("ssh2") as typeof import("ssh2")).utils;

const KIND_FORMAT: Record<SecretKind, (v: string) => boolean> = {
  token: (v) => /^[0-9a-f]{64}$/.test(v),
  password: (v) => /^[A-Za-z0-9_-]{32}$/.test(v),
  vrrp: (v) => /^[A-Za-z0-9_-]{1,8}$/.test(v),
  wireguard: (v) => /^[A-Za-z0-9+/]{43}=$/.test(v),
  "wireguard-psk": (v) => /^[A-Za-z0-9+/]{43}=$/.test(v),
  "ssh-ed25519": (v) => {
    try {
      const k = JSON.parse(v) as { private?: unknown; public?: unknown };
      if (typeof k.private !== "string" || typeof k.public !== "string") return false;
      const m = /^ssh-ed25519 ([A-Za-z0-9+/]+={0,2}) [\x20-\x7e]*$/.exec(k.public);
      // the public blob: "ssh-ed25519" and a 32-byte point, 51 bytes in all
      return !!m && Buffer.from(m[1]!, "base64").length === 51 && !(sshUtils().parseKey(k.private) instanceof Error);
    } catch {
      return false;
    }
  },
};

// Secret names. A secret that belongs to something the spec (or fmc wireguard add-peer)
// names is "<what>/<owner>": wireguard-key/firewall1, postgres-owner/app, wgpeer-psk/alice.
// Every other secret has a fixed name without a "/": k3s-token, wireguard-psk. No owner
// may contain "/" (checked here, whatever the spec's formats allow: host and peer names
// are DNS labels, databases SQL identifiers), so a name splits one way only, and two
// secrets share a name only if they are the same secret, whatever hosts, databases and
// peers are called. Store version 1 joined what and owner with "-": a gateway named psk
// forged the tunnel's wireguard-psk, a database named superuser the postgres-superuser.

/** The secrets that belong to nothing the spec names, and the kind of each. */
const FIXED = {
  "k3s-token": "token",
  "k3s-agent-token": "token",
  "wireguard-psk": "wireguard-psk",
  "postgres-superuser": "password",
  "ipa-admin": "password",
  "ipa-directory-manager": "password",
  "grafana-admin": "password",
  redis: "password",
  elastic: "password",
  "admin-ssh": "ssh-ed25519",
} as const satisfies Record<string, SecretKind>;
type FixedName = keyof typeof FIXED;

/** The secrets that belong to a host, a database or a peer: their kind, and the prefix the owner had in store version 1. */
const OWNED = {
  "wireguard-key": { kind: "wireguard", v1: "wireguard-" },
  "postgres-owner": { kind: "password", v1: "postgres-" },
  "wgpeer-key": { kind: "wireguard", v1: "wgpeer-key-" },
  "wgpeer-psk": { kind: "wireguard-psk", v1: "wgpeer-psk-" },
} as const satisfies Record<string, { kind: SecretKind; v1: string }>;
type OwnedWhat = keyof typeof OWNED;

/** A secret's name: fixed, or what it is and whose, joined by the one character no owner has. */
export type SecretName = FixedName | `${OwnedWhat}/${string}`;

/** Owners: host names and peer names (DNS labels) and database names (SQL identifiers) all fit; "/" never does. */
const OWNER = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function owned(what: OwnedWhat, owner: string): SecretName {
  // the spec's formats already refuse such a name; this makes a collision impossible even if one loosens
  if (!OWNER.test(owner)) throw new Error(`internal: ${JSON.stringify(owner)} cannot own a secret (1 to 63 of a-z 0-9 _ -, no "/")`);
  return `${what}/${owner}`;
}

/** A gateway's or LAN peer's WireGuard private key. */
export const wireguardKeyName = (host: string) => owned("wireguard-key", host);
/** The password of the role that owns a database (the role has the database's name). */
export const postgresOwnerName = (database: string) => owned("postgres-owner", database);
/** An admin peer's WireGuard private key and preshared key (fmc wireguard add-peer). */
export const peerKeyName = (peer: string) => owned("wgpeer-key", peer);
export const peerPskName = (peer: string) => owned("wgpeer-psk", peer);

/** The name a secret had in store version 1, which older notes and scripts may still use. */
export function version1Name(name: SecretName): string {
  const slash = name.indexOf("/");
  return slash < 0 ? name : OWNED[name.slice(0, slash) as OwnedWhat].v1 + name.slice(slash + 1);
}

/**
 * A version-1 name as a current one, told by its shape and its kind. A fixed name whose kind
 * is its own stays: where version 1 stored two meanings under one name (wireguard-psk for a
 * host named psk, postgres-superuser for a database named superuser), the stored kind says
 * which one fmc generated last (the tunnel's preshared key: generated after the host's key,
 * it replaced it), or both kinds were equal and the fixed secret came first (the superuser's
 * password); the owned one then has no value to keep. A name fmc no longer uses (the VRRP
 * passwords of older versions) stays as it was: without a "/" and not fixed, it is no current name.
 */
function fromVersion1(name: string, kind: SecretKind): string {
  if (Object.hasOwn(FIXED, name) && FIXED[name as FixedName] === kind) return name;
  for (const [what, o] of Object.entries(OWNED) as Array<[OwnedWhat, (typeof OWNED)[OwnedWhat]]>) {
    const owner = name.slice(o.v1.length);
    if (name.startsWith(o.v1) && o.kind === kind && OWNER.test(owner)) return `${what}/${owner}`;
  }
  return name;
}

const StoredSecret = z
  .object({ kind: z.enum(SECRET_KINDS), value: z.string().min(1).max(16384) })
  .refine((s) => KIND_FORMAT[s.kind](s.value), { message: "is not a value fmc generates for its kind", path: ["value"] });

/** Version 1's names. It wrote a database's owner with the database's "_" but refused to read it back; read here, it is renamed. */
const V1_NAME = /^[a-z0-9][a-z0-9_-]{0,127}$/;

/** Version 2's names: an owned secret's, or a name without "/" (fixed, or kept from version 1 for something fmc no longer uses). */
const V2_NAME = new RegExp(`^(${Object.keys(OWNED).join("|")})/${OWNER.source.slice(1)}|${V1_NAME.source}`);
const STORE_VERSION = 2;

/** secrets.json as written by fmc (version 2, or version 1 to be renamed); anything else is refused rather than half-used. */
const StoreFile = z.discriminatedUnion("version", [
  z.object({ version: z.literal(1), secrets: z.record(z.string().regex(V1_NAME), StoredSecret) }),
  z.object({ version: z.literal(STORE_VERSION), secrets: z.record(z.string().regex(V2_NAME), StoredSecret) }),
]);

export interface SecretSpec {
  readonly name: SecretName;
  readonly kind: SecretKind;
  readonly purpose: string;
}

const fixed = (name: FixedName, purpose: string): SecretSpec => ({ name, kind: FIXED[name], purpose });
const ownedBy = (what: OwnedWhat, owner: string, purpose: string): SecretSpec => ({ name: owned(what, owner), kind: OWNED[what].kind, purpose });

/** Every secret a spec needs, in a stable order. */
export function requiredSecrets(spec: Spec): SecretSpec[] {
  const out: SecretSpec[] = [
    fixed("k3s-token", "K3s cluster join token"),
    // agents join with their own token, which cannot join a server (K3s --agent-token)
    fixed("k3s-agent-token", "K3s agent join token"),
  ];
  if (spec.wireguard) {
    for (const h of spec.hosts.filter((x) => x.roles.includes("gateway") || x.name === spec.wireguard?.lanPeer)) {
      out.push(ownedBy("wireguard-key", h.name, `WireGuard private key of ${h.name}`));
    }
    out.push(fixed("wireguard-psk", "WireGuard preshared key of the tunnel"));
  }
  if (spec.database) {
    out.push(fixed("postgres-superuser", "PostgreSQL postgres user"));
    for (const d of spec.database.databases) out.push(ownedBy("postgres-owner", d, `PostgreSQL owner of database ${d}`));
  }
  if (spec.identity) {
    out.push(fixed("ipa-admin", "FreeIPA admin"));
    out.push(fixed("ipa-directory-manager", "FreeIPA Directory Manager"));
  }
  const svc = spec.services;
  if (svc.grafana.enabled) out.push(fixed("grafana-admin", "Grafana admin"));
  if (svc.redis.enabled) out.push(fixed("redis", "Redis AUTH"));
  if (svc.elasticsearch.enabled) out.push(fixed("elastic", "Elasticsearch elastic user"));
  if (spec.ssh.generatedKey) out.push(fixed("admin-ssh", "fmc's admin SSH key"));
  // a name repeats only for the same secret asked for twice (databases: [app, app]): kept once.
  // Two different secrets under one name would share, and regenerate, one value: never.
  const unique = out.filter((s, i) => out.findIndex((o) => o.name === s.name) === i);
  for (const s of out) {
    const first = unique.find((u) => u.name === s.name)!;
    if (first.kind !== s.kind || first.purpose !== s.purpose) throw new Error(`internal: two different secrets named ${s.name}`);
  }
  return unique;
}

/** Secret values by name, with the derived public parts renderers need. */
export class Secrets {
  constructor(
    private readonly values: ReadonlyMap<string, string>,
    /** Remote-admin WireGuard peers (fmc wireguard add-peer); their keys are among the values. */
    private readonly peers: readonly WireguardPeer[] = [],
  ) {}

  /** The remote-admin WireGuard peers, in the order they were added. */
  wireguardPeers(): readonly WireguardPeer[] {
    return this.peers;
  }

  get(name: SecretName): string {
    const v = this.values.get(name);
    if (v === undefined) throw new Error(`internal: secret ${name} was not generated`);
    return v;
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** WireGuard public key (base64) of a host's private key. */
  wireguardPublic(host: string): string {
    return wireguardPublicKey(this.get(wireguardKeyName(host)));
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

  /** Replaces every secret value in text with a mask naming it, and every K3s bootstrap token (maskBootstrapTokens). */
  mask(text: string): string {
    let out = text;
    for (const [name, value] of this.values) {
      for (const part of secretParts(value)) if (part.length >= 6) out = out.split(part).join(`<secret:${name}>`);
    }
    return maskBootstrapTokens(out);
  }

  /** Whether the text contains any secret value. */
  leaksInto(text: string): string[] {
    return [...this.values].filter(([, v]) => secretParts(v).some((p) => p.length >= 6 && text.includes(p))).map(([n]) => n);
  }
}

/**
 * A bootstrap token (`<id>.<secret>`, [a-z0-9]{6}.[a-z0-9]{16}: kubeadm's format, which
 * `k3s token create` and fmc apply make) standing alone or after K3s's `K10<hash>::`. fmc makes
 * one per run and never stores it, so the one a node joined with in an earlier run (still in its
 * config.yaml) is no stored value: it is known by its shape. Part of a longer name (a domain
 * with more labels) is not one.
 */
const BOOTSTRAP_TOKEN = /(?<![A-Za-z0-9_.-])[a-z0-9]{6}\.[a-z0-9]{16}(?![A-Za-z0-9_-]|\.[A-Za-z0-9])/g;

/** Masks every bootstrap token in text, this run's and any earlier run's. */
function maskBootstrapTokens(text: string): string {
  return text.replace(BOOTSTRAP_TOKEN, "<secret:k3s-bootstrap-token>");
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
      // ssh2 drops a leading zero byte of the public point (about 1 key in 256), which
      // gives a key nobody can use: generate until the pair is well-formed
      for (;;) {
        const pair = sshUtils().generateKeyPairSync("ed25519", { comment: ADMIN_KEY_COMMENT });
        const value = JSON.stringify({ private: pair.private, public: pair.public.trim() });
        if (KIND_FORMAT["ssh-ed25519"](value)) return value;
      }
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

type Stored = Record<string, { kind: SecretKind; value: string }>;

/**
 * Loads the secrets a spec needs, generating and saving the missing ones. The file is
 * rewritten atomically (temp file + rename), so a crash never leaves half a store. A
 * version-1 store is renamed (values untouched) and written as version 2 by the first
 * load; `say` hears what that changed.
 */
export function loadOrCreateSecrets(dir: StateDir, needed: readonly SecretSpec[], say: (line: string) => void = (line) => void process.stderr.write(`${line}\n`)): Secrets {
  openStateDir(dir.path);
  const file = join(dir.path, "secrets.json");
  const stale = (s: { stored: Stored; version?: number }) => s.version !== STORE_VERSION || needed.some((n) => s.stored[n.name]?.kind !== n.kind);
  // the peer list before the store: add-peer writes keys first, so every listed peer's keys are there
  const peers = readWireguardPeers(dir);
  let read = readStore(file);
  if (stale(read)) {
    // two fmc runs generating at once must agree: generate under a lock, from a fresh read
    const lock = acquireLock(dir.path, "secrets", 10_000);
    try {
      read = readStore(file);
      if (stale(read)) {
        const report = read.version === 1 ? migrationReport(file, read, needed) : [];
        read = { stored: generateMissing(file, read.stored, needed), version: STORE_VERSION, renamed: 0 };
        for (const line of report) say(line);
      }
    } finally {
      lock.release();
    }
  }
  const stored = read.stored;
  stateFileIo(file, "secure", () => chmodSync(file, 0o600));
  const values = new Map<string, string>(needed.map((s) => [s.name, stored[s.name]!.value]));
  for (const p of peers) {
    for (const name of [peerKeyName(p.name), peerPskName(p.name)]) {
      const v = stored[name]?.value;
      if (v === undefined) throw new FmcError("STATE_CORRUPT", `${file} has no ${name} for WireGuard peer ${p.name} listed in ${peersFile(dir)}`, `remove the peer from ${peersFile(dir)} and add it again with fmc wireguard add-peer ${p.name}`);
      values.set(name, v);
    }
  }
  return new Secrets(values, peers);
}

/**
 * What renaming a version-1 store did, for people: how many names changed, and each secret
 * that shared its version-1 name with another one of this spec and so had no value of its
 * own (it is generated now, and the next apply puts it on the hosts).
 */
function migrationReport(file: string, read: { stored: Stored; renamed: number }, needed: readonly SecretSpec[]): string[] {
  const out: string[] = [];
  if (read.renamed) out.push(`note: ${file}: ${read.renamed} secret(s) renamed to what/owner names (postgres-app is now postgres-owner/app; fmc secrets list shows them all); no value changed`);
  for (const s of needed) {
    const old = version1Name(s.name);
    const kept = needed.find((o) => o !== s && version1Name(o.name) === old && read.stored[o.name]);
    if (!kept || read.stored[s.name]) continue;
    out.push(
      `warning: ${file}: version 1 kept one value under ${old} for two secrets, ${kept.name} (${kept.purpose}) and ${s.name} (${s.purpose}); ` +
        `it stays ${kept.name}'s, and ${s.name} gets a value of its own now: the next fmc apply puts it on the hosts`,
    );
  }
  return out;
}

/** The store, version 1 renamed to current names in memory (`renamed` counts the names that changed); none when the file does not exist. */
function readStore(file: string): { stored: Stored; version?: number; renamed: number } {
  const text = readStateFile(dirname(file), file, "secret store");
  if (text === undefined) return { stored: {}, renamed: 0 };
  const store = parseStored(text, StoreFile, (why) => new FmcError("STATE_CORRUPT", `${file} is not a secret store fmc wrote: ${why}`, "restore it from a backup, or remove the entry named above to have fmc generate a new one; deleting the whole file rotates every secret"));
  if (store.version === STORE_VERSION) return { stored: store.secrets, version: store.version, renamed: 0 };
  const stored: Stored = {};
  let renamed = 0;
  for (const [old, secret] of Object.entries(store.secrets)) {
    const name = fromVersion1(old, secret.kind);
    // distinct old names give distinct new ones (a "/" only in renamed ones, each split one way), so nothing is overwritten
    if (Object.hasOwn(stored, name)) throw new Error(`internal: version-1 secrets ${old} and another both became ${name}`);
    stored[name] = secret;
    if (name !== old) renamed++;
  }
  return { stored, version: store.version, renamed };
}

/** Generates the missing secrets and replaces the store atomically (temp file + rename). */
function generateMissing(file: string, current: Stored, needed: readonly SecretSpec[]): Stored {
  const stored = { ...current };
  for (const s of needed) if (stored[s.name]?.kind !== s.kind) stored[s.name] = { kind: s.kind, value: generate(s.kind) };
  writeStore(file, stored);
  return stored;
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
    if (s.kind === "ssh-ed25519") return JSON.stringify({ private: `fake-private-${s.name}`, public: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake ${ADMIN_KEY_COMMENT}` });
    return bytes.toString("hex");
  };
  return new Secrets(new Map(needed.map((s) => [s.name, fake(s)])));
}

// Remote-admin WireGuard peers: the list (names, addresses, public keys) in
// wireguard-peers.json, their private and preshared keys in the secret store. Changed
// under the secrets lock, each file replaced atomically.

/** A remote-admin peer of the gateway (fmc wireguard add-peer). */
export interface WireguardPeer {
  readonly name: string;
  /** Its tunnel address (no prefix). */
  readonly address: string;
  readonly publicKey: string;
  /** When it was added (ISO 8601). */
  readonly added: string;
}

/** Peer names: short, lower case, usable in a comment and as a secret's owner. */
const PEER_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
const peersFile = (dir: StateDir) => join(dir.path, "wireguard-peers.json");

const PeersFile = z.object({
  version: z.literal(1),
  peers: z.array(
    z.object({
      name: z.string().regex(PEER_NAME),
      address: z.string().regex(/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/),
      publicKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/),
      added: z.string().max(64),
    }),
  ),
});

/** The stored peer list; none when the file does not exist. */
export function readWireguardPeers(dir: StateDir): WireguardPeer[] {
  const file = peersFile(dir);
  const text = readStateFile(dir.path, file, "WireGuard peer list");
  if (text === undefined) return [];
  const refuse = (why: string) => new FmcError("STATE_CORRUPT", `${file} is not a peer list fmc wrote: ${why}`, "restore it from a backup; its peers' keys are in secrets.json");
  const peers = parseStored(text, PeersFile, refuse).peers;
  const dup = peers.find((p, i) => peers.findIndex((q) => q.name === p.name || q.address === p.address) !== i);
  if (dup) throw refuse(`peer ${dup.name} (${dup.address}) is listed twice`);
  return peers;
}

function writeAtomically(file: string, text: string) {
  const tmp = `${file}.tmp-${process.pid}`;
  stateFileIo(tmp, "write", () => writeFileSync(tmp, text, { mode: 0o600 }));
  stateFileIo(file, "replace", () => renameSync(tmp, file));
}

function writeStore(file: string, stored: Stored) {
  const sorted = Object.fromEntries(Object.entries(stored).sort(([a], [b]) => a.localeCompare(b)));
  writeAtomically(file, JSON.stringify({ version: STORE_VERSION, secrets: sorted }, null, 2) + "\n");
}

/**
 * Adds a remote-admin peer: a new key pair and preshared key in the store, then the
 * peer in the list (in that order, so a listed peer always has its keys). `allocate`
 * picks its address from the peers already there. A name in use is refused.
 */
export function addWireguardPeer(dir: StateDir, name: string, allocate: (existing: readonly WireguardPeer[]) => string): { peer: WireguardPeer; privateKey: string; presharedKey: string } {
  if (!PEER_NAME.test(name)) throw new FmcError("USAGE", `peer name ${JSON.stringify(name)}: 1 to 32 lower-case letters, digits and -, starting with a letter or digit`, "e.g. fmc wireguard add-peer alice-laptop");
  openStateDir(dir.path);
  const lock = acquireLock(dir.path, "secrets", 10_000);
  try {
    const peers = readWireguardPeers(dir);
    if (peers.some((p) => p.name === name)) throw new FmcError("PEER_EXISTS", `WireGuard peer ${name} exists already`, "pick another name; each peer has its own keys and address");
    const address = allocate(peers);
    const file = join(dir.path, "secrets.json");
    const stored = { ...readStore(file).stored };
    const privateKey = generate("wireguard");
    const presharedKey = generate("wireguard-psk");
    stored[peerKeyName(name)] = { kind: "wireguard", value: privateKey };
    stored[peerPskName(name)] = { kind: "wireguard-psk", value: presharedKey };
    writeStore(file, stored);
    const peer: WireguardPeer = { name, address, publicKey: wireguardPublicKey(privateKey), added: new Date().toISOString() };
    writeAtomically(peersFile(dir), JSON.stringify({ version: 1, peers: [...peers, peer] }, null, 2) + "\n");
    return { peer, privateKey, presharedKey };
  } finally {
    lock.release();
  }
}

/** Replaces the named secrets with new values (fmc wireguard rotate), atomically, under the lock. */
export function rotateSecrets(dir: StateDir, which: readonly SecretSpec[]): void {
  openStateDir(dir.path);
  const lock = acquireLock(dir.path, "secrets", 10_000);
  try {
    const file = join(dir.path, "secrets.json");
    const stored = { ...readStore(file).stored };
    for (const s of which) stored[s.name] = { kind: s.kind, value: generate(s.kind) };
    writeStore(file, stored);
  } finally {
    lock.release();
  }
}
