// Benchmark: how validation and rendering scale with the size of the cluster.
//
// 1. In one process (JIT warm), validate + render the seed (15 hosts, the baseline) and
//    generated specs of 250, 500, 1,000 and 2,000 nodes: milliseconds and the cost per
//    node as a ratio to the seed's (1.00 = linear scaling).
// 2. The real command, as a user runs it: `fmc render SPEC -o DIR` as its own process
//    (start-up, secrets, writing every file), the same sizes, several samples each, beside
//    `node -e 0` in the same run; the marginal cost per node is the slope between sizes.
// Goal: a 1,000-node spec validated and rendered in under 1 s (in process).
//
//   npm run bench                       (SAMPLES=N for more process samples, default 5)
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { loadSpec } from "../src/model/load.js";
import { SEED_YAML } from "../src/model/seed.js";
import { Topology } from "../src/model/topology.js";
import { fixedSecrets, requiredSecrets } from "../src/state/secrets.js";
import { renderAll } from "../src/render/index.js";
import { median } from "./stats.js";

const ROOT = resolve(import.meta.dirname, "..");
const FMC = join(ROOT, "bin/fmc.js");
const SIZES = [250, 500, 1000, 2000];
const SAMPLES = Number(process.env.SAMPLES ?? 5);
if (!Number.isInteger(SAMPLES) || SAMPLES < 1) throw new Error(`SAMPLES=${process.env.SAMPLES}: a whole number of at least 1`);

function generatedSpec(nodes: number): string {
  const seed = parse(SEED_YAML) as Record<string, unknown> & { hosts: Array<Record<string, unknown>>; network: { subnets: unknown[] } };
  const fixed = seed.hosts.filter((h) => !(h.roles as string[]).some((r) => r === "k3s-server" || r === "k3s-agent"));
  const servers = 5;
  const agents = nodes - fixed.length - servers - 1; // the 1 is storage1, also an agent
  const addr = (i: number) => `10.17.${16 + Math.floor(i / 250)}.${(i % 250) + 2}`;
  const hosts: Array<Record<string, unknown>> = [];
  for (let i = 0; i < servers; i++) hosts.push({ name: `server${i + 1}`, roles: ["k3s-server"], os: "flatcar", address: addr(hosts.length), vm: { vcpu: 2, memoryMiB: 4096, diskGiB: 50 } });
  hosts.push({ name: "storage1", roles: ["storage", "k3s-agent"], os: "flatcar", address: addr(hosts.length), vm: { vcpu: 2, memoryMiB: 4096, diskGiB: 10, dataDisks: [{ name: "data", sizeGiB: 500 }] } });
  for (let i = 0; i < agents; i++) hosts.push({ name: `agent${i + 1}`, roles: ["k3s-agent"], os: "flatcar", address: addr(hosts.length), vm: { vcpu: 4, memoryMiB: 8192, diskGiB: 40 } });
  seed.hosts = [...hosts, ...fixed];
  seed.network.subnets.push({ name: "nodes", cidr: "10.17.16.0/20", libvirt: "bridge" });
  const st = seed.storage as { exports: Array<{ clients: string[] }> };
  st.exports[1]!.clients = ["10.17.16.0/20"];
  return stringify(seed);
}

interface Result { hosts: number; validateMs: number; renderMs: number; files: number; bytes: number }

function inProcess(yaml: string): Result {
  const t0 = performance.now();
  const loaded = loadSpec(yaml);
  if (!loaded.spec) throw new Error(`generated spec is invalid: ${JSON.stringify(loaded.problems.slice(0, 3))}`);
  const t1 = performance.now();
  const spec = loaded.spec;
  const secrets = fixedSecrets(requiredSecrets(spec));
  const admin = secrets.adminPublicKey()!;
  const ctx = { spec, topo: new Topology(spec, new Map(spec.hosts.map((h) => [h.name, [admin]]))), secrets };
  const files = renderAll(ctx);
  const t2 = performance.now();
  return { hosts: spec.hosts.length, validateMs: t1 - t0, renderMs: t2 - t1, files: files.length, bytes: files.reduce((n, f) => n + f.content.length, 0) };
}

function best(yaml: string, rounds: number): Result {
  let top: Result | undefined;
  for (let i = 0; i < rounds; i++) {
    const r = inProcess(yaml);
    if (!top || r.validateMs + r.renderMs < top.validateMs + top.renderMs) top = r;
  }
  return top!;
}

const total = (r: Result) => r.validateMs + r.renderMs;
const perNode = (r: Result) => total(r) / r.hosts;

// 1. in process
const specs = new Map<number, string>(SIZES.map((n) => [n, generatedSpec(n)]));
best(SEED_YAML, 3); // warm up the JIT on both code paths
best(specs.get(250)!, 2);
const baseline = best(SEED_YAML, 10);
const rows = [baseline, ...SIZES.map((n) => best(specs.get(n)!, n >= 1000 ? 3 : 5))];
console.log(`fmc validate + render, Node ${process.version}, ${cpus().length} CPUs\n`);
console.log("In one process (best of several rounds, JIT warm):\n");
console.log("| hosts | validate ms | render ms | total ms | files | MB | µs per node | per node / seed's |");
console.log("|------:|------------:|----------:|---------:|------:|---:|------------:|------------------:|");
for (const r of rows) {
  console.log(`| ${r.hosts} | ${r.validateMs.toFixed(1)} | ${r.renderMs.toFixed(1)} | ${total(r).toFixed(1)} | ${r.files} | ${(r.bytes / 1e6).toFixed(1)} | ${((perNode(r) * 1000)).toFixed(0)} | ${(perNode(r) / perNode(baseline)).toFixed(2)}× |`);
}
const k = rows.find((r) => r.hosts === 1000)!;
console.log(`\ngoal (1,000 nodes validated + rendered under 1 s): ${total(k).toFixed(0)} ms, ${total(k) < 1000 ? "met" : "NOT met"}`);

// 2. the real command, one process per run
if (!existsSync(join(ROOT, "dist/cli/main.js"))) {
  console.log("\n(dist/ is missing: npm run build, then npm run bench, to time the fmc render process too)");
  process.exit(0);
}
const work = mkdtempSync(join(tmpdir(), "fmc-bench-render-"));
try {
  const cases = [{ name: "node -e 0", hosts: 0, argv: ["-e", "0"], dir: work }];
  for (const [n, yaml] of [[15, SEED_YAML] as const, ...[...specs].map(([n, y]) => [n, y] as const)]) {
    const dir = join(work, `n${n}`);
    mkdirSync(dir);
    writeFileSync(join(dir, "cluster.yaml"), yaml);
    cases.push({ name: `fmc render (${n} hosts)`, hosts: n, argv: [FMC, "render", "cluster.yaml", "-o", "out"], dir });
  }
  const time = (c: (typeof cases)[number]) => {
    rmSync(join(c.dir, "out"), { recursive: true, force: true });
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, c.argv, { cwd: c.dir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" }, maxBuffer: 64 << 20 });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) throw new Error(`${c.name} exited ${r.status}: ${r.stderr.slice(-1500)}`);
    return ms;
  };
  for (const c of cases) time(c); // first run: secrets generated, files cached by the OS
  const samples = new Map(cases.map((c) => [c.name, [] as number[]]));
  for (let i = 0; i < SAMPLES; i++) for (const c of cases) samples.get(c.name)!.push(time(c));
  const nodeMs = median(samples.get("node -e 0")!);
  const countFiles = (dir: string): number => readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? countFiles(join(dir, e.name)) : 1), 0);
  const sizeOf = (dir: string): number => readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? sizeOf(join(dir, e.name)) : statSync(join(dir, e.name)).size), 0);
  console.log(`\nThe fmc render process (start-up, validation, secrets, rendering, writing every file), median of ${SAMPLES}:\n`);
  console.log("| case | median ms | min ms | max ms | / node -e 0 | files written | ms per added node |");
  console.log("|------|----------:|-------:|-------:|------------:|--------------:|------------------:|");
  let prev: { hosts: number; ms: number } | undefined;
  for (const c of cases) {
    const xs = samples.get(c.name)!;
    const ms = median(xs);
    const files = c.hosts ? countFiles(join(c.dir, "out")) : 0;
    const slope = prev && c.hosts ? ((ms - prev.ms) / (c.hosts - prev.hosts)).toFixed(2) : "";
    console.log(`| ${c.name} | ${ms.toFixed(0)} | ${Math.min(...xs).toFixed(0)} | ${Math.max(...xs).toFixed(0)} | ${(ms / nodeMs).toFixed(1)}× | ${files ? `${files} (${(sizeOf(join(c.dir, "out")) / 1e6).toFixed(1)} MB)` : ""} | ${slope} |`);
    if (c.hosts) prev = { hosts: c.hosts, ms };
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
