// Whether the K3s cluster has been bootstrapped, kept in the state directory beside the
// join tokens that created it. Only the first server's very first start may carry
// `cluster-init`: K3s starts an existing etcd member from its data directory whatever
// `server:` says, but a server with an empty data directory and `cluster-init` (and no
// `server:`) creates a new one-node cluster (k3s-io/k3s pkg/etcd/etcd.go, ETCD.Start:
// "Starting etcd for existing cluster member" when initialised; newCluster when no server
// URL; join otherwise). So once this marker exists, every server renders `server: <VIP>`.
import { existsSync, renameSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { FmcError } from "../errors.js";
import { parseStored } from "./stored.js";
import { readStateFile, stateIo } from "./dir.js";
import type { StateDir } from "./secrets.js";

const K3S_BOOTSTRAP_FILE = "k3s-bootstrapped.json";

const Marker = z.strictObject({
  version: z.literal(1),
  cluster: z.string().min(1).max(63),
  firstServer: z.string().min(1).max(63),
  at: z.string().min(1).max(64),
});
export type K3sBootstrap = z.infer<typeof Marker>;

/** The marker, or undefined when the cluster has not been bootstrapped from this state directory. */
function readK3sBootstrap(dir: StateDir): K3sBootstrap | undefined {
  const file = join(dir.path, K3S_BOOTSTRAP_FILE);
  const text = readStateFile(dir.path, file, "K3s bootstrap marker");
  if (text === undefined) return undefined;
  return parseStored(text, Marker, (why) => new FmcError("STATE_CORRUPT", `${file} is not a marker fmc wrote: ${why}`, "remove it only if the cluster was never bootstrapped; otherwise fix it"));
}

/** Whether `cluster` was bootstrapped (a marker for another cluster name does not count). */
export function isK3sBootstrapped(dir: StateDir, cluster: string): boolean {
  return readK3sBootstrap(dir)?.cluster === cluster;
}

/**
 * Records that the first server's API answered and its etcd member is healthy. The
 * k3s-servers phase calls this before it joins the next server; from then on the first
 * server's config joins through the VIP like every other.
 */
export function markK3sBootstrapped(dir: StateDir, cluster: string, firstServer: string, at = new Date()): K3sBootstrap {
  const marker: K3sBootstrap = { version: 1, cluster, firstServer, at: at.toISOString() };
  const file = join(dir.path, K3S_BOOTSTRAP_FILE);
  stateIo(dir.path, dir.path, "create", () => mkdirSync(dir.path, { recursive: true, mode: 0o700 }));
  stateIo(dir.path, `${file}.tmp`, "write", () => writeFileSync(`${file}.tmp`, JSON.stringify(marker, null, 2) + "\n", { mode: 0o600 }));
  stateIo(dir.path, file, "replace", () => renameSync(`${file}.tmp`, file));
  return marker;
}

/** Forgets the bootstrap (fmc reset, once every node is clean): true when there was a marker. */
export function forgetK3sBootstrap(dir: StateDir): boolean {
  const file = join(dir.path, K3S_BOOTSTRAP_FILE);
  if (!existsSync(file)) return false;
  stateIo(dir.path, file, "remove", () => rmSync(file));
  return true;
}
