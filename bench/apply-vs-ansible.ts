// Benchmark: fmc's base + loadbalancer phases against the same work as an Ansible
// playbook (bench/ansible/), on the lab's 15 seed hosts (containers: `fmc lab up --vm
// none`). Both sides start from a fresh lab for each fresh sample and converge it: a
// first run that changes everything (HAProxy, Keepalived and node_exporter really come
// from apt, from the lab's local repository), then no-op re-runs on the same lab.
//
// What makes the comparison fair (README: "fmc apply against Ansible"):
// - the playbook renders its own files from Jinja2 templates and plain values (addresses,
//   ports, VIPs, keys, NTP sources, sysctl values) that this script takes from the spec and
//   its topology and writes into the inventory: never fmc's rendered text;
// - the playbook mirrors every check and action of src/phases/base.ts and loadbalancer.ts
//   (its header lists them one by one);
// - the same end state is enforced: after every run of either tool, `fmc plan --phase
//   base,loadbalancer --detailed-exitcode` must exit 0, else the bench fails and shows the plan;
// - same scope: `fmc apply --yes --phase base,loadbalancer`;
// - every ansible-playbook run gets a fresh ControlPath directory (no SSH master of an
//   earlier run is reused); fmc opens new connections in every process;
// - the order alternates sample by sample (Ansible then fmc, fmc then Ansible, …);
// - several samples: min / median / max, and the ratios of the medians.
// Ansible gets its fastest settings: no fact gathering, pipelining, one fork per host.
//
// Needs root (the lab). Installs ansible-core (Debian's package) when it is missing.
//   npm run bench:apply
//   FMC_BENCH_SAMPLES=5 FMC_BENCH_NOOP=9 npm run bench:apply   (fresh samples per tool, no-op runs per tool)
//   node --import tsx bench/apply-vs-ansible.ts --inventory DIR  (only write DIR/inventory.yml for
//     the lab that is up for DIR/cluster.yaml, and print the ansible-playbook command)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { openSession } from "../src/engine/session.js";
import { plan } from "../src/engine/run.js";
import { K3S_SYSCTL } from "../src/render/ignition.js";
import { K3S_API_PORT } from "../src/model/checks.js";
import { ntpSources } from "../src/model/ntp.js";
import { nodeExporterHosts } from "../src/render/prometheus.js";
import { ADMIN_KEY_COMMENT } from "../src/state/secrets.js";
import { median } from "./stats.js";

const ROOT = resolve(import.meta.dirname, "..");
const FMC = join(ROOT, "bin/fmc.js");
const PLAYBOOK = join(ROOT, "bench/ansible/playbook.yml");
const PHASES = "base,loadbalancer";

function count(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${raw}: a whole number of at least ${min}`);
  return n;
}
const FRESH = count("FMC_BENCH_SAMPLES", 3, 1);
const NOOP = count("FMC_BENCH_NOOP", 5, 1);

interface Run {
  ms: number;
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cwd: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", ...env }, maxBuffer: 64 << 20 });
  const ms = performance.now() - t0;
  if (r.error) throw r.error;
  return { ms, status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run, what: string): Run {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  return r;
}

const fmc = (cwd: string, ...args: string[]) => ok(run(cwd, process.execPath, [FMC, ...args]), `fmc ${args.join(" ")}`);

/** ansible-core from Debian's archive, before any lab is up (see the note in main). */
function ensureAnsible(): void {
  if (run(ROOT, "sh", ["-c", "command -v ansible-playbook"]).status === 0) return;
  console.log("ansible-playbook is missing: apt-get install -y --no-install-recommends ansible-core");
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = () => run(ROOT, "apt-get", ["install", "-y", "--no-install-recommends", "ansible-core"], env);
  let r = install();
  if (r.status !== 0 && /Unable to locate package|has no installation candidate|no package lists/i.test(r.stdout + r.stderr)) {
    console.log("apt has no package lists yet: apt-get update, then the install again");
    ok(run(ROOT, "apt-get", ["update", "-q"], env), "apt-get update");
    r = install();
  }
  ok(r, "apt-get install ansible-core");
}

function versions(): string {
  const ansible = ok(run(ROOT, "ansible-playbook", ["--version"]), "ansible-playbook --version").stdout.match(/core ([\d.]+)/)?.[1] ?? "?";
  const own = fmc(ROOT, "--version").stdout.trim();
  return `ansible-core ${ansible}, fmc ${own}, node ${process.version}`;
}

/**
 * The inventory: where each lab host is reached, and the plain values the playbook's
 * templates render from (the spec as the lab runs it, and its topology).
 */
async function writeInventory(dir: string): Promise<{ inventory: string; hosts: number }> {
  const s = await openSession({ file: join(dir, "cluster.yaml") });
  try {
    const { spec, topo } = s.render;
    const exporters = new Set(nodeExporterHosts(spec).map((h) => h.name));
    const pair = (h: { name: string; address: string }) => ({ name: h.name, address: h.address });
    const hosts = Object.fromEntries(
      spec.hosts.map((h) => {
        const t = s.inventory.targets.get(h.name);
        if (!t) throw new Error(`${h.name}: not in the lab's inventory`);
        const user = s.pc.loginUser(h);
        const ntp = ntpSources(spec, h.os);
        return [
          h.name,
          {
            ansible_host: t.address,
            ansible_port: t.port,
            ansible_user: t.user,
            host_roles: [...h.roles],
            host_address: h.address,
            host_interface: h.interface,
            ntp_pools: [...ntp.pools],
            ntp_servers: [...ntp.servers],
            login_user: user,
            // the playbook needs a path before it connects; fmc reads the home from passwd (a fact),
            // the bench's lab logs in as root, and a non-root user gets useradd's default home
            authorized_keys_path: `${user === "root" ? "/root" : `/home/${user}`}/.ssh/authorized_keys`,
            ssh_keys: [...topo.keysOf(h)],
            node_exporter: exporters.has(h.name),
          },
        ];
      }),
    );
    const key = join(dir, "admin_key");
    writeFileSync(key, s.render.secrets.adminPrivateKey()!, { mode: 0o600 });
    const lb = spec.loadBalancer;
    const vars = {
      ansible_python_interpreter: "/usr/bin/python3",
      ansible_ssh_private_key_file: key,
      ansible_ssh_common_args: `-o UserKnownHostsFile=${s.inventory.knownHostsFile}`,
      domain: spec.domain,
      dns_servers: topo.dnsServers,
      upstream_dns: [...spec.network.upstreamDns],
      k3s_sysctl: Object.fromEntries(K3S_SYSCTL.map((l) => l.split("=").map((x) => x.trim()))),
      vip_holder_sysctl: { "net.ipv4.ip_nonlocal_bind": "1" },
      router_sysctl: { "net.ipv4.ip_forward": "1" },
      keep_other_admin_keys: spec.ssh.generatedKey,
      admin_key_comment: ADMIN_KEY_COMMENT,
      load_balancer: {
        maxconn: lb.maxconn,
        api_port: lb.apiPort,
        http_port: lb.httpPort,
        https_port: lb.httpsPort,
        stats_port: lb.statsPort,
        metrics_port: lb.metricsPort,
        check: { inter_ms: lb.check.interMs, fall: lb.check.fall, rise: lb.check.rise },
      },
      k3s_api_port: K3S_API_PORT,
      k3s_servers: topo.servers.map(pair),
      ingress_backends: topo.ingressBackends.map(pair),
      ingress_node_ports: { http: spec.k3s.ingressNodePorts.http, https: spec.k3s.ingressNodePorts.https },
      vrrp: { check_ms: spec.vrrp.checkMs, advert_ms: spec.vrrp.advertMs, preempt: spec.vrrp.preempt },
      vips: spec.vips.map((v) => ({ name: v.name, address: v.address, role: v.role, router_id: v.routerId, prefix: topo.prefixOf(v.address), holders: topo.vipHolders(v).map(pair) })),
      edge: { engine: spec.edge.engine, metrics_port: spec.edge.metricsPort },
    };
    const lbs = topo.withRole("loadbalancer").map((h) => h.name);
    const inventory = join(dir, "inventory.yml");
    writeFileSync(inventory, stringify({ all: { vars, hosts, children: { loadbalancer: { hosts: Object.fromEntries(lbs.map((h) => [h, {}])) } } } }));
    return { inventory, hosts: s.inventory.targets.size };
  } finally {
    s.close();
  }
}

/** One ansible-playbook run with its own, fresh ControlPath directory, closed afterwards. */
function ansible(dir: string, inventory: string, forks: number): { ms: number; changed: number; out: string } {
  const control = mkdtempSync(join(dir, "cp-"));
  try {
    const r = ok(
      run(dir, "ansible-playbook", ["-i", inventory, "-f", String(forks), PLAYBOOK], {
        ANSIBLE_PIPELINING: "True",
        ANSIBLE_HOST_KEY_CHECKING: "True",
        ANSIBLE_NOCOLOR: "1",
        ANSIBLE_FORCE_COLOR: "0",
        ANSIBLE_SSH_CONTROL_PATH_DIR: control,
        ANSIBLE_LOCAL_TEMP: join(dir, "ansible-tmp"),
        ANSIBLE_RETRY_FILES_ENABLED: "False",
        ANSIBLE_CONFIG: "",
      }),
      "ansible-playbook",
    );
    const changed = [...r.stdout.matchAll(/ changed=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    return { ms: r.ms, changed, out: r.stdout };
  } finally {
    // the run's SSH masters (ControlPersist) end now rather than linger
    for (const sock of readdirSync(control)) spawnSync("ssh", ["-o", `ControlPath=${join(control, sock)}`, "-O", "exit", "lab"], { stdio: "ignore" });
    rmSync(control, { recursive: true, force: true });
  }
}

/** The same end state, enforced: fmc finds nothing left to change in these phases. */
function sameEndState(dir: string, after: string): number {
  const r = run(dir, process.execPath, [FMC, "plan", "--phase", PHASES, "--detailed-exitcode"]);
  if (r.status !== 0) {
    throw new Error(`after ${after}, fmc plan --phase ${PHASES} --detailed-exitcode exited ${r.status} (0 = nothing left to change): not the same end state\n${r.stdout}\n${r.stderr.slice(-4000)}`);
  }
  return r.ms;
}

interface Breakdown {
  node: number[];
  version: number[];
  plan: number[];
  open: number[];
  facts: number[];
  factsAgain: number[];
}

/** Where a no-op apply's time goes: Node's own start, fmc's start, and in-process the session (connecting) and the facts. */
async function breakdown(dir: string, b: Breakdown): Promise<void> {
  b.node.push(run(dir, process.execPath, ["-e", "0"]).ms);
  b.version.push(fmc(dir, "--version").ms);
  const t0 = performance.now();
  const s = await openSession({ file: join(dir, "cluster.yaml"), phases: PHASES.split(",") });
  const t1 = performance.now();
  try {
    const p1 = await plan(s.pc, s.phases, s.transports, { concurrency: 16 });
    const t2 = performance.now();
    await plan(s.pc, s.phases, s.transports, { concurrency: 16 });
    const t3 = performance.now();
    if (p1.changes.length) throw new Error(`the no-op breakdown found ${p1.changes.length} changes`);
    b.open.push(t1 - t0);
    b.facts.push(t2 - t1);
    b.factsAgain.push(t3 - t2);
  } finally {
    s.close();
  }
}

const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const stats = (xs: number[]) => `min ${sec(Math.min(...xs))}  median ${sec(median(xs))}  max ${sec(Math.max(...xs))}  (n=${xs.length})`;

async function main(): Promise<void> {
  const inventoryOnly = process.argv.indexOf("--inventory");
  if (inventoryOnly >= 0) {
    const dir = resolve(process.argv[inventoryOnly + 1] ?? ".");
    const { inventory, hosts } = await writeInventory(dir);
    console.log(`ANSIBLE_PIPELINING=True ansible-playbook -i ${inventory} -f ${hosts} ${PLAYBOOK}`);
    return;
  }
  const t0 = performance.now();
  const work = mkdtempSync(join(tmpdir(), "fmc-bench-apply-"));
  const labs: string[] = [];
  const times = { ansibleFresh: [] as number[], ansibleNoop: [] as number[], fmcFresh: [] as number[], fmcNoop: [] as number[], plans: [] as number[] };
  const b: Breakdown = { node: [], version: [], plan: [], open: [], facts: [], factsAgain: [] };
  let checks = 0;
  let hostCount = 0;
  let ansibleFreshChanged = 0;
  try {
    // Before any lab: the lab's `internet` segment (203.0.113.0/24) can hide this
    // machine's package mirror while a lab is up.
    ensureAnsible();
    console.log(`apply-vs-ansible: phases ${PHASES} on the lab's seed hosts (fmc lab up --vm none)`);
    console.log(`versions: ${versions()}`);
    console.log(`samples: ${FRESH} fresh per tool (each on a fresh lab), ${NOOP} no-op per tool; order alternates sample by sample`);
    for (let i = 0; i < FRESH; i++) {
      const order: Array<"ansible" | "fmc"> = i % 2 === 0 ? ["ansible", "fmc"] : ["fmc", "ansible"];
      // no-op runs spread over the samples' labs: 5 over 3 labs = 2, 2, 1
      const noops = Math.floor(NOOP / FRESH) + (i < NOOP % FRESH ? 1 : 0);
      for (const tool of order) {
        const dir = mkdtempSync(join(work, `${tool}-${i + 1}-`));
        copyFileSync(join(ROOT, "examples/seed/cluster.yaml"), join(dir, "cluster.yaml"));
        labs.push(dir);
        fmc(dir, "lab", "up", "--vm", "none");
        const line: string[] = [];
        if (tool === "ansible") {
          const { inventory, hosts } = await writeInventory(dir);
          hostCount = hosts;
          const fresh = ansible(dir, inventory, hosts);
          if (fresh.changed === 0) throw new Error("Ansible's fresh run changed nothing: not a fresh lab?");
          ansibleFreshChanged = fresh.changed;
          times.ansibleFresh.push(fresh.ms);
          times.plans.push(sameEndState(dir, "Ansible's fresh run"));
          checks++;
          line.push(`fresh ${sec(fresh.ms)} (${fresh.changed} changed)`);
          for (let n = 0; n < noops; n++) {
            const again = ansible(dir, inventory, hosts);
            if (again.changed !== 0) throw new Error(`Ansible's re-run changed ${again.changed}: the playbook is not idempotent\n${again.out.slice(-4000)}`);
            times.ansibleNoop.push(again.ms);
            line.push(`no-op ${sec(again.ms)}`);
          }
        } else {
          const fresh = fmc(dir, "apply", "--yes", "--phase", PHASES);
          times.fmcFresh.push(fresh.ms);
          times.plans.push(sameEndState(dir, "fmc's fresh apply"));
          checks++;
          line.push(`fresh ${sec(fresh.ms)}`);
          for (let n = 0; n < noops; n++) {
            const again = fmc(dir, "apply", "--yes", "--phase", PHASES);
            if (!/no changes|nothing to (do|change)/i.test(again.stdout + again.stderr)) throw new Error(`fmc's re-run was not a no-op:\n${again.stdout.slice(-4000)}\n${again.stderr.slice(-2000)}`);
            times.fmcNoop.push(again.ms);
            line.push(`no-op ${sec(again.ms)}`);
          }
          await breakdown(dir, b);
        }
        times.plans.push(sameEndState(dir, `${tool === "ansible" ? "Ansible's" : "fmc's"} no-op runs`));
        checks++;
        console.log(`sample ${i + 1} ${tool === "ansible" ? "ansible-playbook" : "fmc apply       "}: ${line.join(", ")}`);
        fmc(dir, "lab", "down");
        labs.pop();
      }
    }
    b.plan = times.plans;
    const ratio = (a: number[], f: number[]) => median(a) / median(f);
    const noopRatio = ratio(times.ansibleNoop, times.fmcNoop);
    console.log("");
    console.log(`hosts: ${hostCount} (seed topology); Ansible's fresh run: ${ansibleFreshChanged} tasks changed`);
    console.log(`ansible-playbook fresh: ${stats(times.ansibleFresh)}`);
    console.log(`fmc apply fresh:        ${stats(times.fmcFresh)}`);
    console.log(`ansible-playbook no-op: ${stats(times.ansibleNoop)}`);
    console.log(`fmc apply no-op:        ${stats(times.fmcNoop)}`);
    console.log(`ratio of medians (ansible / fmc): fresh ${ratio(times.ansibleFresh, times.fmcFresh).toFixed(1)}x, no-op ${noopRatio.toFixed(1)}x`);
    console.log(`goal: no-op apply at least 20x faster than Ansible: ${noopRatio >= 20 ? "holds" : `MISSED (${noopRatio.toFixed(1)}x)`}`);
    console.log(`same end state: fmc plan --phase ${PHASES} --detailed-exitcode exited 0 after every run of both tools (${checks} checks)`);
    console.log("where fmc's no-op time goes (medians):");
    const rows: Array<[string, number[]]> = [
      ["node -e 0", b.node],
      ["fmc --version (Node + fmc's start-up)", b.version],
      [`fmc plan --phase ${PHASES} (process)`, b.plan],
      [`fmc apply --phase ${PHASES} (no-op)`, times.fmcNoop],
      ["in-process: session open (load, connect)", b.open],
      ["in-process: facts + plan, first", b.facts],
      ["in-process: facts + plan, open connections", b.factsAgain],
    ];
    for (const [what, xs] of rows) console.log(`  ${`${what}:`.padEnd(50)} ${sec(median(xs))}`);
    console.log(`wall time: ${sec(performance.now() - t0)}`);
  } finally {
    for (const dir of labs) spawnSync(process.execPath, [FMC, "lab", "down"], { cwd: dir, stdio: "ignore" });
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
