// Benchmark: validate + render a generated 1,000-node spec. The baseline, run in the
// same process, is the seed topology (15 hosts): the ratio of per-node costs shows
// whether validation and rendering scale linearly. Goal: 1,000 nodes under 1 s.
//
//   npm run bench
import { stringify } from "yaml";
import { loadSpec } from "../src/model/load.js";
import { SEED_YAML } from "../src/model/seed.js";
import { Topology } from "../src/model/topology.js";
import { fixedSecrets, requiredSecrets } from "../src/state/secrets.js";
import { renderAll } from "../src/render/index.js";
import { parse } from "yaml";

export function generatedSpec(nodes: number): string {
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
  seed.network.subnets.push({ name: "nodes", cidr: "10.17.16.0/20", libvirt: "nat" });
  const st = seed.storage as { exports: Array<{ clients: string[] }> };
  st.exports[1]!.clients = ["10.17.16.0/20"];
  return stringify(seed);
}

function run(yaml: string) {
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

function best(yaml: string, rounds: number) {
  let top: ReturnType<typeof run> | undefined;
  for (let i = 0; i < rounds; i++) {
    const r = run(yaml);
    if (!top || r.validateMs + r.renderMs < top.validateMs + top.renderMs) top = r;
  }
  return top!;
}

const big = generatedSpec(1000);
best(SEED_YAML, 3); // warm up the JIT on both code paths
const baseline = best(SEED_YAML, 10);
const result = best(big, 5);
const perNode = (r: ReturnType<typeof run>) => (r.validateMs + r.renderMs) / r.hosts;
const total = result.validateMs + result.renderMs;
console.log(`baseline: seed topology, ${baseline.hosts} hosts: validate ${baseline.validateMs.toFixed(1)} ms + render ${baseline.renderMs.toFixed(1)} ms (${baseline.files} files)`);
console.log(`1,000-node spec (${result.hosts} hosts): validate ${result.validateMs.toFixed(0)} ms + render ${result.renderMs.toFixed(0)} ms = ${total.toFixed(0)} ms, ${result.files} files, ${(result.bytes / 1e6).toFixed(1)} MB`);
console.log(`throughput: ${Math.round((result.hosts / total) * 1000)} nodes/s`);
console.log(`per-node cost vs baseline: ${(perNode(result) / perNode(baseline)).toFixed(2)}x (1.00 = linear scaling)`);
console.log(`goal (validate + render under 1 s): ${total < 1000 ? "met" : "NOT met"}`);
