// Benchmark: the base + loadbalancer phases on the lab's seed hosts (15), once by
// `fmc apply` and once by an equivalent Ansible playbook (bench/ansible/), each on a
// fresh lab: a first run that changes everything and a no-op re-run. Ansible is the
// baseline; its run and ours happen in this one process run. Ansible is given its
// fastest settings: no fact gathering, pipelining, as many forks as hosts. Lab hosts
// start without HAProxy and Keepalived: both tools really install them with apt (from
// the lab's local repository), so a fresh run includes the packages' own start-up.
// Needs root (the lab). Run: npm run bench:apply
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { stringify } from "yaml";
import { openSession } from "../src/engine/session.js";
import { plan } from "../src/engine/run.js";

const ROOT = resolve(import.meta.dirname, "..");
const FMC = join(ROOT, "bin/fmc.js");
const work = mkdtempSync(join(tmpdir(), "fmc-bench-apply-"));

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): { ms: number; stdout: string; stderr: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd: work, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", ...env }, maxBuffer: 64 << 20 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
  return { ms, stdout: r.stdout, stderr: r.stderr };
}
const fmc = (...args: string[]) => sh(process.execPath, [FMC, ...args]);

/** Writes the files fmc would write, and an inventory listing them per host. */
async function ansibleInputs(): Promise<{ inventory: string; filesDir: string; key: string; knownHosts: string; hosts: number }> {
  const s = await openSession({ file: join(work, "cluster.yaml") });
  try {
    const p = await plan(s.pc, s.phases, s.transports, { concurrency: 16 });
    const filesDir = join(work, "files");
    const hostVars: Record<string, { base_files: unknown[] }> = {};
    for (const c of p.changes) {
      if (!c.file) continue;
      const dest = join(filesDir, c.host, c.file.path);
      mkdirSync(dirname(dest), { recursive: true });
      writeFileSync(dest, c.file.content);
      if (c.phase !== "base") continue;
      const hv = (hostVars[c.host] ??= { base_files: [] });
      hv.base_files.push({ path: c.file.path, mode: (c.file.mode ?? 0o644).toString(8).padStart(4, "0"), owner: c.file.owner ?? "root", group: c.file.group ?? "root" });
    }
    const key = join(work, "admin_key");
    writeFileSync(key, s.render.secrets.adminPrivateKey()!, { mode: 0o600 });
    chmodSync(key, 0o600);
    const hosts = Object.fromEntries(
      [...s.inventory.targets.values()].map((t) => [t.name, { ansible_host: t.address, ansible_user: t.user, ...hostVars[t.name] }]),
    );
    const lbs = s.render.topo.withRole("loadbalancer").map((h) => h.name);
    const inv = {
      all: {
        vars: { files_dir: filesDir, ansible_python_interpreter: "/usr/bin/python3", ansible_ssh_private_key_file: key, ansible_ssh_common_args: `-o UserKnownHostsFile=${s.inventory.knownHostsFile}` },
        hosts,
        children: { loadbalancer: { hosts: Object.fromEntries(lbs.map((h) => [h, {}])) } },
      },
    };
    const inventory = join(work, "inventory.yml");
    writeFileSync(inventory, stringify(inv));
    return { inventory, filesDir, key, knownHosts: s.inventory.knownHostsFile, hosts: s.inventory.targets.size };
  } finally {
    s.close();
  }
}

function ansible(inventory: string, forks: number) {
  const r = sh("ansible-playbook", ["-i", inventory, "-f", String(forks), join(ROOT, "bench/ansible/playbook.yml")], {
    ANSIBLE_PIPELINING: "True",
    ANSIBLE_HOST_KEY_CHECKING: "True",
    ANSIBLE_NOCOLOR: "1",
    ANSIBLE_LOCAL_TEMP: join(work, "ansible-tmp"),
    ANSIBLE_RETRY_FILES_ENABLED: "False",
  });
  const changed = [...r.stdout.matchAll(/changed=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  return { ms: r.ms, changed };
}

try {
  copyFileSync(join(ROOT, "examples/seed/cluster.yaml"), join(work, "cluster.yaml"));
  fmc("lab", "down");

  // Ansible (baseline) on a fresh lab
  fmc("lab", "up");
  const inputs = await ansibleInputs();
  const aFresh = ansible(inputs.inventory, inputs.hosts);
  const aNoop = ansible(inputs.inventory, inputs.hosts);
  const afterAnsible = spawnSync(process.execPath, [FMC, "plan", "--detailed-exitcode"], { cwd: work, encoding: "utf8" });
  fmc("lab", "down");

  // fmc on a fresh lab
  fmc("lab", "up");
  const fFresh = fmc("apply", "--yes");
  const fNoop = fmc("apply", "--yes");
  const fPlan = sh(process.execPath, [FMC, "plan", "--detailed-exitcode"]);
  fmc("lab", "down");

  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  console.log(`hosts: ${inputs.hosts} lab hosts (seed topology); phases base + loadbalancer`);
  console.log(`ansible-playbook (baseline): fresh ${s(aFresh.ms)} (${aFresh.changed} changed), no-op ${s(aNoop.ms)} (${aNoop.changed} changed)`);
  console.log(`fmc apply:                   fresh ${s(fFresh.ms)}, no-op ${s(fNoop.ms)}; fmc plan after: ${s(fPlan.ms)}`);
  console.log(`after Ansible, fmc plan exit code: ${afterAnsible.status} (0 = the playbook reached the same state)`);
  console.log(`ratio fresh (ansible / fmc): ${(aFresh.ms / fFresh.ms).toFixed(1)}x`);
  console.log(`ratio no-op (ansible / fmc): ${(aNoop.ms / fNoop.ms).toFixed(1)}x (target: at least 10x)`);
} finally {
  spawnSync(process.execPath, [FMC, "lab", "down"], { cwd: work });
  rmSync(work, { recursive: true, force: true });
}
