// The secret store's names (issue 22): every secret a spec needs has a name of its own,
// whatever its hosts, databases and admin peers are called, so no two secrets ever share a
// value; and a store written under the old names (version 1: kind and owner joined by "-")
// is renamed once, every value byte for byte. Real stores in temporary directories.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dnsLabel, sqlIdentifier } from "../../src/model/formats.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { Topology } from "../../src/model/topology.js";
import type { Spec } from "../../src/model/schema.js";
import { tunnelOf, wgConfig } from "../../src/render/wireguard.js";
import { loadOrCreateSecrets, peerKeyName, peerPskName, postgresOwnerName, requiredSecrets, wireguardKeyName, wireguardPublicKey, type Secrets } from "../../src/state/secrets.js";
import { ROOT, specFrom, tempDir } from "../helpers.js";

const quiet = () => {};

/** Loads a spec's secrets twice from one store: the second load must find every one of them. */
function loadTwice(dir: string, spec: Spec): [Secrets, Secrets] {
  const needed = requiredSecrets(spec);
  return [loadOrCreateSecrets({ path: dir }, needed, quiet), loadOrCreateSecrets({ path: dir }, needed, quiet)];
}

const storeOf = (dir: string) => JSON.parse(readFileSync(join(dir, "secrets.json"), "utf8")) as { version: number; secrets: Record<string, { kind: string; value: string }> };

/** Each secret the spec needs has its own name and its own value, stored once and the same on every load. */
function assertOwnSecrets(dir: string, spec: Spec, [first, second]: [Secrets, Secrets]) {
  const needed = requiredSecrets(spec);
  const values = needed.map((s) => first.get(s.name));
  assert.equal(new Set(values).size, values.length, "two secrets share a value");
  const names = needed.map((s) => s.name);
  assert.equal(new Set(names).size, names.length, `names repeat: ${names.join(", ")}`);
  assert.deepEqual(needed.map((s) => second.get(s.name)), values, "a second load regenerated a secret");
  assert.equal(Object.keys(storeOf(dir).secrets).length, needed.length, "one stored entry per secret");
}

const conf = (text: string, key: "PrivateKey" | "PresharedKey") => new RegExp(`^${key} = (\\S+)$`, "m").exec(text)![1]!;

for (const [role, host] of [["gateway", "vps1"], ["LAN peer", "firewall1"]] as const) {
  test(`a ${role} named psk has a WireGuard key of its own, not the tunnel's preshared key, and keeps it`, (t) => {
    const dir = tempDir(t);
    const spec = specFrom(SEED_YAML.replaceAll(host, "psk"));
    const loads = loadTwice(dir, spec);
    const render = (secrets: Secrets) => {
      const ctx = { spec, topo: new Topology(spec), secrets };
      const tunnel = tunnelOf(ctx)!;
      return { gateway: wgConfig(ctx, tunnel, "gateway"), lan: wgConfig(ctx, tunnel, "lan") };
    };
    const { gateway, lan } = render(loads[0]);
    const psk = conf(lan, "PresharedKey");
    assert.equal(conf(gateway, "PresharedKey"), psk);
    assert.notEqual(conf(gateway, "PrivateKey"), psk, "the gateway's private key is the preshared key");
    assert.notEqual(conf(lan, "PrivateKey"), psk, "the LAN peer's private key is the preshared key");
    assert.ok(!lan.includes(conf(gateway, "PrivateKey")), "the LAN peer's config holds the gateway's private key");
    assert.deepEqual(render(loads[1]), { gateway, lan }, "the tunnel's keys changed between two renders");
    assertOwnSecrets(dir, spec, loads);
  });
}

test("a database named superuser has an owner password of its own, not the PostgreSQL superuser's", (t) => {
  const dir = tempDir(t);
  const spec = specFrom(SEED_YAML.replace("databases: [app]", "databases: [app, superuser]"));
  assert.equal(requiredSecrets(spec).length, 14);
  assertOwnSecrets(dir, spec, loadTwice(dir, spec));
});

test("a database whose name has an _ (a SQL identifier may) keeps its owner's password: the store reads back what it wrote", (t) => {
  const dir = tempDir(t);
  const spec = specFrom(SEED_YAML.replace("databases: [app]", "databases: [app, my_db]"));
  assertOwnSecrets(dir, spec, loadTwice(dir, spec));
});

test("a database listed twice is one secret asked for twice, not two secrets", () => {
  const spec = specFrom(SEED_YAML.replace("databases: [app]", "databases: [app, app]"));
  assert.deepEqual(requiredSecrets(spec).filter((s) => s.name.startsWith("postgres-owner/")).map((s) => s.name), ["postgres-owner/app"]);
});

// ---- the property: any names at all, no two secrets of a spec share a name ----

/** mulberry32: a small seeded generator, so a failure names a case that can be run again. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = specFrom(SEED_YAML);
const isHost = (n: string) => dnsLabel.safeParse(n).success;
const isDatabase = (n: string) => sqlIdentifier.safeParse(n).success;
const isPeer = (n: string) => /^[a-z0-9][a-z0-9-]{0,31}$/.test(n);

/**
 * Names chosen to forge: every secret name of a full spec, each of its "-" pieces and every
 * tail and head of it at a "-" (psk, superuser, agent-token, wireguard-key, wgpeer-psk …),
 * with "_" for "-" (SQL names), each of those followed by -x, plus random ones from the
 * same pieces.
 */
function adversarialNames(): string[] {
  const full = [...requiredSecrets(SEED).map((s) => s.name), peerKeyName("alice"), peerPskName("alice")];
  const words = new Set<string>(["psk", "superuser", "key", "owner", "token", "postgres", "wireguard", "wgpeer", "a", "0"]);
  for (const name of full) {
    for (const part of name.split("/")) {
      words.add(part);
      const pieces = part.split("-");
      for (let i = 0; i < pieces.length; i++) {
        words.add(pieces[i]!);
        words.add(pieces.slice(i).join("-"));
        words.add(pieces.slice(0, i + 1).join("-"));
      }
    }
  }
  for (const w of [...words]) {
    words.add(w.replaceAll("-", "_"));
    words.add(`${w}-x`);
  }
  const pieces = [...words];
  const next = random(22);
  for (let i = 0; i < 200; i++) {
    const n = 1 + Math.floor(next() * 3);
    words.add(Array.from({ length: n }, () => pieces[Math.floor(next() * pieces.length)]!).join(next() < 0.7 ? "-" : "_").slice(0, 40));
  }
  return [...words].filter((w) => isHost(w) || isDatabase(w) || isPeer(w));
}

/** The seed with its gateway and LAN peer renamed, other databases, and admin peers: the secret names it needs. */
function identities(gateway: string, lanPeer: string, databases: readonly string[], peers: readonly string[]): string[] | undefined {
  const others = SEED.hosts.map((h) => h.name).filter((h) => h !== "vps1" && h !== "firewall1");
  if (!isHost(gateway) || !isHost(lanPeer) || gateway === lanPeer || others.includes(gateway) || others.includes(lanPeer)) return undefined;
  if (!databases.length || !databases.every(isDatabase) || new Set(databases).size !== databases.length || !peers.every(isPeer) || new Set(peers).size !== peers.length) return undefined;
  const rename = (n: string) => (n === "vps1" ? gateway : n === "firewall1" ? lanPeer : n);
  const spec: Spec = {
    ...SEED,
    hosts: SEED.hosts.map((h) => ({ ...h, name: rename(h.name) })),
    wireguard: { ...SEED.wireguard!, lanPeer },
    database: { ...SEED.database!, databases: [...databases] },
  };
  return [...requiredSecrets(spec).map((s) => s.name), ...peers.flatMap((p) => [peerKeyName(p), peerPskName(p)])];
}

function assertDistinct(names: readonly string[], what: string) {
  const seen = new Set<string>();
  for (const n of names) {
    assert.ok(!seen.has(n), `${what}: two secrets named ${n}`);
    seen.add(n);
  }
}

test("property: for every pair of spec names (hosts, databases, admin peers, as any of them), a spec's secret names are distinct", () => {
  const names = adversarialNames();
  assert.ok(["psk", "superuser", "agent-token", "k3s_token", "directory-manager-x"].every((n) => names.includes(n)));
  assert.ok(SEED.identity && SEED.wireguard && SEED.database, "the base spec has every kind of secret");
  let cases = 0;
  // every ordered pair: a the gateway, b the LAN peer; both databases; both peers
  for (const a of names) {
    for (const b of names) {
      const sets = [
        identities(a, b, [a, b].filter(isDatabase), [a, b].filter(isPeer)),
        identities(a, "firewall1", a === b ? [a] : [a, b].filter(isDatabase), [b].filter(isPeer)),
        identities("vps1", a, ["app", b].filter(isDatabase), [a].filter(isPeer)),
      ];
      for (const s of sets) {
        if (!s) continue;
        assertDistinct(s, `a=${a} b=${b}`);
        cases++;
      }
    }
  }
  // and larger random specs: many databases and peers at once
  const next = random(7);
  const pick = () => names[Math.floor(next() * names.length)]!;
  for (let i = 0; i < 2000; i++) {
    const dbs = [...new Set(Array.from({ length: 1 + Math.floor(next() * 8) }, pick).filter(isDatabase))];
    const peers = [...new Set(Array.from({ length: Math.floor(next() * 6) }, pick).filter(isPeer))];
    const s = identities(pick(), pick(), dbs, peers);
    if (!s) continue;
    assertDistinct(s, `case ${i}`);
    cases++;
  }
  assert.ok(cases > names.length * names.length, `only ${cases} valid cases`);
});

test("property: every kind of owned secret for every owner, and the fixed names: all distinct; an owner with a / is refused", () => {
  const fixed = requiredSecrets(SEED).map((s) => s.name).filter((n) => !n.includes("/"));
  assert.equal(fixed.length, 10, "the seed needs every fixed secret");
  const owners = adversarialNames();
  const all = [...fixed, ...owners.flatMap((o) => [wireguardKeyName(o), postgresOwnerName(o), peerKeyName(o), peerPskName(o)])];
  assertDistinct(all, "names");
  assert.equal(all.length, fixed.length + 4 * owners.length);
  for (const bad of ["a/b", "/", "psk/", "", "A", "x".repeat(64)]) assert.throws(() => wireguardKeyName(bad), /internal: .* cannot own a secret/);
});

// ---- version 1 stores ----

/** The names fmc 0.1 (store version 1) wrote, written out here rather than derived: the format being migrated from. */
const V1_NAMES: Record<string, string> = {
  "wireguard-vps1": "wireguard-key/vps1",
  "wireguard-firewall1": "wireguard-key/firewall1",
  "postgres-app": "postgres-owner/app",
  "postgres-reports": "postgres-owner/reports",
  "wgpeer-key-alice": "wgpeer-key/alice",
  "wgpeer-psk-alice": "wgpeer-psk/alice",
  "wgpeer-key-psk": "wgpeer-key/psk",
  "wgpeer-psk-psk": "wgpeer-psk/psk",
};

/** A current store in `source`, written into `dir` as version 1 would have written it: old names, same values. */
function asVersion1(source: string, dir: string, extra: Record<string, { kind: string; value: string }> = {}): Record<string, { kind: string; value: string }> {
  const current = storeOf(source).secrets;
  const back = Object.fromEntries(Object.entries(V1_NAMES).map(([old, now]) => [now, old]));
  const old = Object.fromEntries([...Object.entries(current).map(([name, s]) => [back[name] ?? name, s] as const), ...Object.entries(extra)].sort(([a], [b]) => a.localeCompare(b)));
  for (const name of Object.keys(old)) assert.ok(!name.includes("/"), `${name} has no version-1 name in V1_NAMES`);
  writeFileSync(join(dir, "secrets.json"), JSON.stringify({ version: 1, secrets: old }, null, 2) + "\n", { mode: 0o600 });
  // and the .gitignore every fmc wrote beside its store, which marks the directory as fmc's
  if (!existsSync(join(dir, ".gitignore"))) writeFileSync(join(dir, ".gitignore"), "# fmc state: secrets and locks. Never commit.\n*\n");
  return old;
}

/** Two admin peers, alice and psk, with keys in `dir`'s store under current names and the peer list beside it. */
function withPeers(dir: string, spec: Spec) {
  loadOrCreateSecrets({ path: dir }, requiredSecrets(spec), quiet);
  const store = storeOf(dir);
  const peers = ["alice", "psk"].map((name, i) => {
    const key = Buffer.alloc(32, i + 1);
    key[0]! &= 248;
    key[31]! = (key[31]! & 127) | 64;
    store.secrets[peerKeyName(name)] = { kind: "wireguard", value: key.toString("base64") };
    store.secrets[peerPskName(name)] = { kind: "wireguard-psk", value: Buffer.alloc(32, i + 9).toString("base64") };
    return { name, address: `10.17.0.${129 + i}`, publicKey: wireguardPublicKey(key.toString("base64")), added: "2026-01-01T00:00:00.000Z" };
  });
  writeFileSync(join(dir, "secrets.json"), JSON.stringify(store, null, 2) + "\n", { mode: 0o600 });
  return JSON.stringify({ version: 1, peers }, null, 2) + "\n";
}

test("a version-1 store is renamed once: every value byte for byte under its new name, the file 0600, nothing generated", (t) => {
  const source = tempDir(t);
  const dir = tempDir(t);
  const spec = specFrom(SEED_YAML.replace("databases: [app]", "databases: [app, reports]"));
  const peers = withPeers(source, spec);
  writeFileSync(join(dir, "wireguard-peers.json"), peers, { mode: 0o600 });
  // a VRRP password of an older version: fmc no longer uses it, and it stays as it was
  const vrrp = { "vrrp-api": { kind: "vrrp", value: "Ab3_-x9Z" } };
  const old = asVersion1(source, dir, vrrp);
  const said: string[] = [];
  const secrets = loadOrCreateSecrets({ path: dir }, requiredSecrets(spec), (line) => said.push(line));
  const after = storeOf(dir);
  assert.equal(after.version, 2);
  assert.equal(statSync(join(dir, "secrets.json")).mode & 0o777, 0o600);
  for (const s of requiredSecrets(spec)) assert.equal(secrets.get(s.name), after.secrets[s.name]!.value);
  assert.deepEqual(after.secrets, Object.fromEntries(Object.entries(old).map(([name, s]) => [V1_NAMES[name] ?? name, s])), "renamed, values and kinds as they were, nothing added or lost");
  assert.deepEqual(after.secrets, { ...storeOf(source).secrets, ...vrrp }, "the store a version-2 fmc wrote for the same values");
  assert.equal(said.length, 1, said.join("\n"));
  assert.match(said[0]!, /^note: .*secrets\.json: 8 secret\(s\) renamed .*postgres-app is now postgres-owner\/app.*no value changed$/);
  // once: the next load finds a current store and leaves the file alone
  const text = readFileSync(join(dir, "secrets.json"), "utf8");
  said.length = 0;
  loadOrCreateSecrets({ path: dir }, requiredSecrets(spec), (line) => said.push(line));
  assert.deepEqual(said, []);
  assert.equal(readFileSync(join(dir, "secrets.json"), "utf8"), text);
});

for (const c of [
  { what: "a gateway named psk", yaml: SEED_YAML.replaceAll("vps1", "psk"), old: "wireguard-psk", kept: "wireguard-psk", own: "wireguard-key/psk" },
  { what: "a database named superuser", yaml: SEED_YAML.replace("databases: [app]", "databases: [app, superuser]"), old: "postgres-superuser", kept: "postgres-superuser", own: "postgres-owner/superuser" },
] as const) {
  test(`a version-1 store of ${c.what} (one value, two secrets): the value stays ${c.kept}'s, ${c.own} gets its own, and a warning names both`, (t) => {
    const source = tempDir(t);
    const dir = tempDir(t);
    const spec = specFrom(c.yaml);
    loadOrCreateSecrets({ path: source }, requiredSecrets(spec), quiet);
    // version 1 had one entry for both: the other meaning's value never existed on its own
    const store = storeOf(source);
    delete store.secrets[c.own];
    writeFileSync(join(source, "secrets.json"), JSON.stringify(store));
    const old = asVersion1(source, dir);
    const said: string[] = [];
    const secrets = loadOrCreateSecrets({ path: dir }, requiredSecrets(spec), (line) => said.push(line));
    assert.equal(secrets.get(c.kept), old[c.old]!.value, "the shared value stays with the secret it was generated for");
    assert.notEqual(secrets.get(c.own), old[c.old]!.value);
    const after = storeOf(dir).secrets;
    for (const [name, s] of Object.entries(old)) assert.deepEqual(after[V1_NAMES[name] ?? name], s, `${name} changed`);
    const warning = said.find((l) => l.startsWith("warning: "));
    assert.ok(warning, said.join("\n"));
    assert.ok(warning.includes(`under ${c.old} for two secrets, ${c.kept} (`) && warning.includes(`${c.own} gets a value of its own now`), warning);
    assertOwnSecrets(dir, spec, loadTwice(dir, spec));
  });
}

test("fmc secrets show takes the new name, and the version-1 one with a note", (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "cluster.yaml"), SEED_YAML);
  const spec = join(dir, "cluster.yaml");
  const fmc = (...args: string[]) =>
    spawnSync(process.execPath, ["--import", "tsx", "-e", `import(${JSON.stringify(join(ROOT, "src/cli/main.ts"))}).then((m) => m.main(${JSON.stringify(args)}))`], { cwd: ROOT, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  const now = fmc("secrets", "show", "postgres-owner/app", "-f", spec);
  assert.equal(now.status, 0, now.stderr);
  assert.equal(now.stdout, `${storeOf(join(dir, ".fmc")).secrets["postgres-owner/app"]!.value}\n`);
  const old = fmc("secrets", "show", "postgres-app", "-f", spec);
  assert.equal(old.status, 0, old.stderr);
  assert.equal(old.stdout, now.stdout);
  assert.match(old.stderr, /postgres-app is now named postgres-owner\/app/);
});
