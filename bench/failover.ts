// Benchmark: failover windows on the lab's traffic path (test/fixtures/lab-traffic.yaml),
// real HAProxy, Keepalived, nftables and wireguard-go. Per fault, several runs, each
// with a probe making a request every 20 ms (connect limit 250 ms, request limit 500 ms):
// the window is from the first failed request's start to the next good one's, so it
// is accurate to about one probe interval plus one connect limit. Also the tunnel's
// throughput (iperf3 through wireguard-go) against the direct path between the same
// two hosts. Bounded: RUNS runs per fault, about four minutes in all.
// Needs root (the lab). Run: npm run bench:failover
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { INTERNET_NS, labExec, labPowerOff, labPowerOn, LABEL } from "../src/lab/lab.js";
import { longestWindow, startProbe, type ProbeOptions, type ProbeResult } from "../src/lab/probe.js";

const ROOT = resolve(import.meta.dirname, "..");
const FMC = join(ROOT, "bin/fmc.js");
const RUNS = Number(process.env.RUNS ?? 3);
const work = mkdtempSync(join(tmpdir(), "fmc-bench-failover-"));
const API = "10.31.5.10";
const EDGE = "10.31.2.10";
const PUBLIC = "203.0.113.10";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function fmc(...args: string[]): string {
  const r = spawnSync(process.execPath, [FMC, ...args], { cwd: work, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  if (r.status !== 0) throw new Error(`fmc ${args.join(" ")} exited ${r.status}:\n${r.stdout.slice(-1500)}\n${r.stderr.slice(-1500)}`);
  return r.stdout;
}
const holder = (vip: string, hosts: string[]) => hosts.find((h) => spawnSync("ip", ["-n", `${LABEL}-${h}`, "-o", "-4", "addr", "show"], { encoding: "utf8" }).stdout.includes(` ${vip}/`))!;
const sh = (host: string, cmd: string) => labExec(host, ["bash", "-c", cmd], { timeoutMs: 60_000 });

interface Fault {
  readonly name: string;
  readonly vip: "api" | "edge";
  readonly probe: ProbeOptions;
  /** Breaks something; returns how to heal it afterwards. */
  readonly act: () => Promise<() => Promise<void>>;
}

const LBS = ["lb1", "lb2"];
const EDGES = ["edge1", "edge2"];
const apiProbe: ProbeOptions = { from: "edge1", curl: [`http://${API}/`] };
const e2eProbe: ProbeOptions = { from: INTERNET_NS, curl: ["--cacert", join(work, ".fmc/lab/ca.pem"), "--resolve", `example.com:443:${PUBLIC}`, "https://example.com/"] };
const restart = (host: string, unit: string) => async () => void sh(host, `systemctl reset-failed ${unit}; systemctl restart ${unit}`);

const FAULTS: Fault[] = [
  { name: "HAProxy SIGKILL on the holder", vip: "api", probe: apiProbe, act: async () => { const h = holder(API, LBS); sh(h, "pkill -KILL -x haproxy"); return restart(h, "haproxy"); } },
  { name: "Keepalived SIGKILL on the holder", vip: "api", probe: apiProbe, act: async () => { const h = holder(API, LBS); sh(h, "pkill -KILL -x keepalived"); return restart(h, "keepalived"); } },
  { name: "holder powered off", vip: "api", probe: apiProbe, act: async () => { const h = holder(API, LBS); await labPowerOff(h); return () => labPowerOn(h); } },
  { name: "HAProxy SIGKILL on the edge holder (end to end)", vip: "edge", probe: e2eProbe, act: async () => { const h = holder(EDGE, EDGES); sh(h, "pkill -KILL -x haproxy"); return restart(h, "haproxy"); } },
  { name: "Keepalived SIGKILL on the edge holder (end to end)", vip: "edge", probe: e2eProbe, act: async () => { const h = holder(EDGE, EDGES); sh(h, "pkill -KILL -x keepalived"); return restart(h, "keepalived"); } },
  { name: "edge holder powered off (end to end)", vip: "edge", probe: e2eProbe, act: async () => { const h = holder(EDGE, EDGES); await labPowerOff(h); return () => labPowerOn(h); } },
];

async function measure(probe: ProbeOptions, act: () => Promise<void>, settleMs = 2500): Promise<ProbeResult> {
  const p = startProbe(probe);
  await sleep(800);
  await act();
  await sleep(settleMs);
  return p.stop();
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s[s.length - 1]! };
};
const rows: string[] = [];
function report(name: string, vip: string, results: ProbeResult[]): void {
  const w = stats(results.map(longestWindow));
  const lost = stats(results.map((r) => r.failed));
  rows.push(`| ${name} | ${vip} | ${results.length} | ${w.min} / ${w.median} / ${w.max} | ${lost.min} / ${lost.median} / ${lost.max} |`);
  process.stderr.write(`${name} (${vip}): window ms ${JSON.stringify(w)}, requests lost ${JSON.stringify(lost)}\n`);
}

async function main(): Promise<void> {
  copyFileSync(join(ROOT, "test/fixtures/lab-traffic.yaml"), join(work, "cluster.yaml"));
  process.stderr.write("lab up and apply …\n");
  fmc("lab", "up");
  try {
    fmc("apply", "--yes");
    for (const f of FAULTS) {
      const results: ProbeResult[] = [];
      for (let i = 0; i < RUNS; i++) {
        let heal: () => Promise<void> = async () => {};
        results.push(await measure(f.probe, async () => void (heal = await f.act())));
        // the old holder returns: measured as a fault of its own for power-offs
        if (f.name.includes("powered off")) returning.push({ vip: f.vip, r: await measure(f.probe, heal, 4000) });
        else await heal();
        await sleep(1500);
      }
      report(f.name, f.vip, results);
    }
    for (const vip of ["api", "edge"] as const) {
      const rs = returning.filter((x) => x.vip === vip).map((x) => x.r);
      if (rs.length) report("old holder returning", vip, rs);
    }
    // a changed config reloaded under load (api VIP, the load balancers' HAProxy)
    const reloads: ProbeResult[] = [];
    const spec = join(work, "cluster.yaml");
    for (let i = 0; i < RUNS; i++) {
      const text = readFileSync(spec, "utf8");
      writeFileSync(spec, text.replace(/interMs: (\d+)/, (_, n) => `interMs: ${Number(n) + 100}`));
      reloads.push(await measure({ ...apiProbe, everyMs: 5 }, async () => void fmc("apply", "--yes", "--phase", "loadbalancer"), 1000));
    }
    report("config reload under load", "api", reloads);
    throughput();
  } finally {
    spawnSync(process.execPath, [FMC, "lab", "down", "--force"], { cwd: work, stdio: "ignore" });
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(`\n| fault | VIP | runs | longest window ms (min / median / max) | requests lost (min / median / max) |\n|---|---|---|---|---|\n${rows.join("\n")}\n`);
}
const returning: Array<{ vip: string; r: ProbeResult }> = [];

/** iperf3 from vps1 to firewall1: through the tunnel, and over the uplink directly. */
function throughput(): void {
  sh("firewall1", "nft insert rule inet fmc_firewall input tcp dport 5201 accept comment \"fmc-bench\" && (iperf3 -s -D -1 >/dev/null; true)");
  const gbps = (to: string) => {
    sh("firewall1", "pgrep -x iperf3 >/dev/null || iperf3 -s -D -1");
    const r = sh("vps1", `iperf3 -c ${to} -t 3 -J`);
    const bps = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
    return bps / 1e9;
  };
  const tunnel = gbps("10.31.0.2");
  const direct = gbps("198.51.100.2");
  sh("firewall1", "h=$(nft -a list chain inet fmc_firewall input | sed -n 's/.*fmc-bench.*# handle \\([0-9]*\\)/\\1/p'); [ -n \"$h\" ] && nft delete rule inet fmc_firewall input handle $h");
  rows.push(`| iperf3 vps1 → firewall1 | tunnel (wireguard-go) ${tunnel.toFixed(2)} Gbit/s vs direct ${direct.toFixed(2)} Gbit/s | 1 | ratio ${(tunnel / direct).toFixed(2)} | |`);
  process.stderr.write(`tunnel ${tunnel.toFixed(2)} Gbit/s, direct ${direct.toFixed(2)} Gbit/s\n`);
}

await main();
