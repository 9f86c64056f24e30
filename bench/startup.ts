// Benchmark: how long fmc takes to answer, as a ratio to `node -e 0` (the floor: starting
// Node itself) measured in the same run. Every case runs SAMPLES times, the cases
// interleaved round by round so that a busy moment of the machine spreads over all of
// them; min / median / max are printed, and the ratios of the medians (and of the mins).
// Goals: fmc --help ≤ 2× node, fmc validate of the seed spec ≤ 3× node.
// `npx fmc` adds npm's own start-up on top: shown once for reference.
//
//   npm run bench:startup                 (builds first; bin/fmc.js runs dist/)
//   SAMPLES=31 npm run bench:startup      (more samples)
//   npm run bench:startup -- --check      (exit 1 when a goal is missed)
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { minMedianMax as stats } from "./stats.js";

const ROOT = resolve(import.meta.dirname, "..");
const FMC = join(ROOT, "bin/fmc.js");
const SAMPLES = Number(process.env.SAMPLES ?? 15);
if (!Number.isInteger(SAMPLES) || SAMPLES < 3) throw new Error(`SAMPLES=${process.env.SAMPLES}: a whole number of at least 3`);
if (!existsSync(join(ROOT, "dist/cli/main.js"))) throw new Error("dist/ is missing: npm run build first (npm run bench:startup does)");

const work = mkdtempSync(join(tmpdir(), "fmc-bench-startup-"));
process.on("exit", () => rmSync(work, { recursive: true, force: true }));

interface Case {
  readonly name: string;
  readonly argv: readonly string[];
  /** What the output must show for the run to count: the command did its work. */
  readonly expect?: RegExp;
  /** The most it may take, as a multiple of node -e 0. */
  readonly goal?: number;
  readonly cwd?: string;
}

const node = (...args: string[]) => [process.execPath, ...args];
const CASES: Case[] = [
  { name: "node -e 0", argv: node("-e", "0") },
  { name: "fmc --help", argv: node(FMC, "--help"), expect: /^USAGE fmc <command>/m, goal: 2 },
  { name: "fmc --version", argv: node(FMC, "--version"), expect: /^\d+\.\d+\.\d+/ },
  { name: "fmc validate (seed spec)", argv: node(FMC, "validate", "cluster.yaml"), expect: /^cluster\.yaml: valid — 15 hosts/m, goal: 3 },
  { name: "fmc render --help", argv: node(FMC, "render", "--help"), expect: /^USAGE fmc render/m },
  { name: "fmc apply --help", argv: node(FMC, "apply", "--help"), expect: /^USAGE fmc apply/m },
];

function run(c: Case): number {
  const started = process.hrtime.bigint();
  const r = spawnSync(c.argv[0]!, c.argv.slice(1), { cwd: c.cwd ?? work, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0 || (c.expect && !c.expect.test(r.stdout))) throw new Error(`${c.name} failed (exit ${r.status}):\n${r.stdout.slice(-1500)}\n${r.stderr.slice(-1500)}`);
  return ms;
}

// the spec a new user validates: the seed, as fmc init writes it
run({ name: "fmc init", argv: node(FMC, "init", "-o", "cluster.yaml") });

// warm-up: the file system cache, for every case
for (const c of CASES) for (let i = 0; i < 2; i++) run(c);

const samples = new Map<Case, number[]>(CASES.map((c) => [c, []]));
for (let round = 0; round < SAMPLES; round++) {
  // a different case first in each round
  for (let i = 0; i < CASES.length; i++) {
    const c = CASES[(round + i) % CASES.length]!;
    samples.get(c)!.push(run(c));
  }
}

// npx's own cost, for the README: a few samples, not part of the goals
const npx = { name: "npx fmc --help", argv: ["npx", "--no-install", "fmc", "--help"], expect: /^USAGE fmc <command>/m, cwd: ROOT } satisfies Case;
const npxSamples = existsSync(join(ROOT, "node_modules")) ? Array.from({ length: 5 }, () => run(npx)) : [];

const base = stats(samples.get(CASES[0]!)!);
const fmt = (ms: number) => ms.toFixed(0).padStart(5);
const rows: string[] = [];
let missed = 0;
for (const [c, xs] of [...samples, ...(npxSamples.length ? ([[npx, npxSamples]] as const) : [])]) {
  const s = stats(xs);
  const ratio = s.median / base.median;
  const goal = "goal" in c && c.goal !== undefined ? `≤ ${c.goal}×: ${ratio <= c.goal ? "met" : "MISSED"}` : "";
  if ("goal" in c && c.goal !== undefined && ratio > c.goal) missed++;
  const times = (r: number) => `${r.toFixed(2)}×`.padStart(8);
  rows.push(`| ${c.name.padEnd(26)} | ${xs.length.toString().padStart(3)} | ${fmt(s.min)} | ${fmt(s.median)} | ${fmt(s.max)} | ${times(ratio)} | ${times(s.min / base.min)} | ${goal} |`);
}

process.stdout.write(
  [
    `fmc start-up, ${SAMPLES} samples per case (interleaved), Node ${process.version}, ${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(2)} at the end`,
    "",
    "| case (ms)                  |   n |   min |   med |   max | med/node | min/node | goal |",
    "|----------------------------|-----|-------|-------|-------|----------|----------|------|",
    ...rows,
    "",
  ].join("\n") + "\n",
);
if (process.argv.includes("--check") && missed > 0) process.exitCode = 1;
