// Shared test helpers: the seed context with fixed secrets, the CLI as a child process,
// temporary directories and throwaway network namespaces that are always removed.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadSpec } from "../src/model/load.js";
import { SEED_YAML } from "../src/model/seed.js";
import { Topology } from "../src/model/topology.js";
import { fixedSecrets, requiredSecrets } from "../src/state/secrets.js";
import type { ClusterContext } from "../src/state/context.js";
import type { Spec } from "../src/model/schema.js";

export const ROOT = resolve(import.meta.dirname, "..");
export const FMC = join(ROOT, "bin", "fmc.js");

export function specFrom(yaml: string): Spec {
  const r = loadSpec(yaml);
  if (!r.spec) throw new Error(`spec invalid: ${JSON.stringify(r.problems, null, 2)}`);
  return r.spec;
}

export function contextFor(yaml = SEED_YAML, seed = "test"): ClusterContext {
  const spec = specFrom(yaml);
  const secrets = fixedSecrets(requiredSecrets(spec), seed);
  const admin = secrets.adminPublicKey();
  const keys = new Map(spec.hosts.map((h) => [h.name, [...spec.ssh.keys, ...(admin ? [admin] : [])]]));
  return { spec, topo: new Topology(spec, keys), secrets };
}

export function tempDir(t: { after: (fn: () => void) => void }, prefix = "fmc-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function fmc(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): RunResult {
  const r = spawnSync(process.execPath, [FMC, ...args], { cwd, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The temporary directories of this repository's lab tests: a lab one of them left behind may be forced down. */
const LAB_TEST_DIRS = /fmc-(vm|traffic|lab|data|k3s|readme)-e2e-/;

/** Takes down a lab an earlier run of the lab tests left behind (another checkout's lab is refused, not taken). */
export function clearStaleLab(dir: string): void {
  const stale = fmc(["lab", "down"], dir);
  if (stale.status !== 0 && stale.stderr.includes("LAB_NOT_OURS") && LAB_TEST_DIRS.test(stale.stderr)) fmc(["lab", "down", "--force"], dir);
}

/**
 * The K3s lab of test/fixtures/lab-k3s.yaml in `dir` (a fresh temporary directory): a lab an
 * earlier test run left behind is forced down, then `lab up --only k3s-server,k3s-agent`
 * (the caller asserts it) and, when it came up, the K3s phases applied.
 */
export function upK3sLab(dir: string): { up: RunResult; applied?: RunResult } {
  copyFileSync(join(ROOT, "test/fixtures/lab-k3s.yaml"), join(dir, "cluster.yaml"));
  clearStaleLab(dir);
  const up = fmc(["lab", "up", "--only", "k3s-server,k3s-agent"], dir);
  return up.status === 0 ? { up, applied: fmc(["apply", "--yes", "--phase", "k3s-servers,k3s-agents"], dir) } : { up };
}

export function requireTool(name: string): void {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
  } catch {
    throw new Error(`${name} is not installed; .ci/run installs it (apt-get install) before the tests`);
  }
}

/** Runs fn with a fresh network namespace that is deleted afterwards, even on failure. */
export function inNetns<T>(fn: (ns: string) => T): T {
  const ns = `fmc-t${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  execFileSync("ip", ["netns", "add", ns]);
  try {
    return fn(ns);
  } finally {
    execFileSync("ip", ["netns", "del", ns]);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns something truthy; throws after timeoutMs naming what it waited for. */
export async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 20_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The LVM layout scripts/capture-lvm-fixture.sh captured test/fixtures/lvm/ with. */
export const LVM_FIXTURE_SPEC = {
  device: "/dev/vdb",
  volumeGroup: "data",
  volumes: [
    { name: "postgres_lv", size: "1G", filesystem: "ext4" as const },
    { name: "shared-lv", size: "1G", filesystem: "xfs" as const },
    { name: "longhorn_lv", size: "100%FREE", filesystem: "ext4" as const },
  ],
};

/** What LVM_FIXTURE_SPEC needs on the captured blank disk ("fresh"), step by step. */
export const LVM_FIXTURE_FRESH_STEPS = [
    "create volume group data on /dev/vdb",
    "create logical volume data/postgres_lv (1G)",
    "make ext4 on /dev/data/postgres_lv",
    "create logical volume data/shared-lv (1G)",
    "make xfs on /dev/data/shared-lv",
    "create logical volume data/longhorn_lv (100%FREE)",
    "make ext4 on /dev/data/longhorn_lv",
];
