// The review of the rendered K3s files (issue 11), each finding as a test on the rendered
// output: cluster-init only until the cluster exists (a state marker), servers tainted
// and warned below 4 GiB, the install unit retried with backoff and a fallback resolver,
// a separate agent token, etcd snapshots to S3, one default StorageClass, and kured
// rebooting Flatcar nodes one at a time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { renderAll } from "../../src/render/index.js";
import { ignitionConfig, K3S_INSTALL_ATTEMPTS, K3S_INSTALL_MAX_DELAY_S, k3sInstallScript } from "../../src/render/ignition.js";
import { SERVER_TAINT } from "../../src/render/k3s.js";
import { K3S_AGENT_FLAGS, K3S_SERVER_FLAGS } from "../../src/model/k3s-flags.js";
import { loadSpec } from "../../src/model/load.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { requiredSecrets } from "../../src/state/secrets.js";
import { isK3sBootstrapped, markK3sBootstrapped } from "../../src/state/bootstrap.js";
import { context } from "../../src/project.js";
import type { ClusterContext } from "../../src/state/context.js";
import { contextFor, requireTool, ROOT, tempDir } from "../helpers.js";

type Ign = ReturnType<typeof ignitionConfig> & {
  storage: { files: Array<{ path: string; mode: number; contents: { source: string } }> };
  systemd: { units: Array<{ name: string; contents?: string; dropins?: Array<{ name: string; contents: string }> }> };
};
const ign = (ctx: ClusterContext, host: string) => ignitionConfig(ctx, ctx.topo.host(host)) as Ign;
const fileOf = (i: Ign, path: string) => {
  const f = i.storage.files.find((x) => x.path === path);
  assert.ok(f, `no ${path}`);
  return Buffer.from(f.contents.source.split(",")[1]!, "base64").toString("utf8");
};
const unitOf = (i: Ign, name: string) => i.systemd.units.find((u) => u.name === name)?.contents ?? assert.fail(`no ${name}`);
const artifact = (ctx: ClusterContext, path: string) => renderAll(ctx).find((a) => a.path === path)?.content ?? assert.fail(`${path} not rendered`);
const k3sCfg = (ctx: ClusterContext, host: string) => parseYaml(artifact(ctx, `k3s/${host}/config.yaml`)) as Record<string, unknown>;
const seedWith = (k3sLines: string) => SEED_YAML.replace("k3s:\n  version: v1.33.4+k3s1\n", `k3s:\n  version: v1.33.4+k3s1\n${k3sLines}`);
const problems = (yaml: string) => loadSpec(yaml).problems;
const servers = ["master1", "master2", "master3"];
const agents = ["worker1", "worker2", "worker3", "storage1"];
const VIP_URL = "https://10.17.5.10:6443";

test("cluster-init only while the cluster does not exist: afterwards every server, master1 too, joins through the VIP", () => {
  const fresh = contextFor();
  assert.equal(k3sCfg(fresh, "master1")["cluster-init"], true);
  assert.equal(k3sCfg(fresh, "master1").server, undefined);
  const done: ClusterContext = { ...fresh, k3sBootstrapped: true };
  for (const s of servers) {
    const cfg = k3sCfg(done, s);
    assert.equal(cfg["cluster-init"], undefined, s);
    assert.equal(cfg.server, VIP_URL, s);
    // the first boot of a rebuilt master1 (Ignition) joins too
    assert.equal((parseYaml(fileOf(ign(done, s), "/etc/rancher/k3s/config.yaml")) as Record<string, unknown>)["cluster-init"], undefined, s);
  }
});

test("the bootstrapped marker lives in the state directory and reaches the render context", (t) => {
  const dir = tempDir(t);
  const specFile = join(dir, "cluster.yaml");
  writeFileSync(specFile, SEED_YAML);
  const state = { path: join(dir, ".fmc") };
  assert.equal(isK3sBootstrapped(state, "flatcarmicrocloud"), false);
  const before = context({ file: specFile, stateDir: state.path }).ctx;
  assert.equal(k3sCfg(before, "master1")["cluster-init"], true);
  markK3sBootstrapped(state, "flatcarmicrocloud", "master1", new Date("2026-01-02T03:04:05Z"));
  assert.equal((spawnSync("stat", ["-c", "%a", join(state.path, "k3s-bootstrapped.json")], { encoding: "utf8" }).stdout.trim()), "600");
  assert.equal(isK3sBootstrapped(state, "flatcarmicrocloud"), true);
  assert.equal(isK3sBootstrapped(state, "another-cluster"), false, "a marker of another cluster does not count");
  const after = context({ file: specFile, stateDir: state.path }).ctx;
  assert.equal(after.k3sBootstrapped, true);
  assert.equal(k3sCfg(after, "master1")["cluster-init"], undefined);
  assert.equal(k3sCfg(after, "master1").server, VIP_URL);
  writeFileSync(join(state.path, "k3s-bootstrapped.json"), "{\"version\": 2}");
  assert.throws(() => context({ file: specFile, stateDir: state.path }), /STATE_CORRUPT|not a marker fmc wrote/);
});

test("servers are tainted CriticalAddonsOnly when there are agents; the option turns it off; servers below 4 GiB are warned", () => {
  const ctx = contextFor();
  for (const s of servers) assert.ok((k3sCfg(ctx, s)["node-taint"] as string[]).includes(SERVER_TAINT), s);
  for (const a of agents) assert.ok(!((k3sCfg(ctx, a)["node-taint"] as string[] | undefined) ?? []).includes(SERVER_TAINT), a);
  const off = contextFor(seedWith("  serverTaint: false\n"));
  for (const s of servers) assert.equal(k3sCfg(off, s)["node-taint"], undefined, s);
  // DaemonSets that belong on every node tolerate it
  const kured = parseYaml(artifact(ctx, "kubernetes/60-helmchart-kured.yaml").split("\n").slice(1).join("\n"));
  assert.ok(parseYaml(kured.spec.valuesContent).tolerations.some((t: { key: string; effect: string }) => t.key === "CriticalAddonsOnly" && t.effect === "NoExecute"));
  assert.deepEqual(problems(SEED_YAML).filter((p) => /memoryMiB/.test(p.path)), []);
  const small = problems(SEED_YAML.replace("address: 10.17.4.21, vm: { vcpu: 2, memoryMiB: 4096", "address: 10.17.4.21, vm: { vcpu: 2, memoryMiB: 2048"));
  const w = small.find((p) => p.path === "hosts[0].vm.memoryMiB");
  assert.ok(w && w.severity === "warning", JSON.stringify(small));
  assert.match(w.message, /master1 is a K3s server with 2048 MiB/);
  assert.match(w.hint!, /4096 MiB.*resource-profiling/);
  const workerSmall = problems(SEED_YAML.replace("address: 10.17.4.24, vm: { vcpu: 3, memoryMiB: 8192", "address: 10.17.4.24, vm: { vcpu: 3, memoryMiB: 2048"));
  assert.equal(workerSmall.find((p) => p.path === "hosts[3].vm.memoryMiB"), undefined, "agents are not warned");
});

test("k3s-install.service restarts on failure without a start limit, and every unit of master1's and storage1's Ignition passes systemd-analyze verify", (t) => {
  requireTool("systemd-analyze");
  const ctx = contextFor();
  const unit = unitOf(ign(ctx, "master1"), "k3s-install.service");
  assert.match(unit, /^Restart=on-failure$/m);
  assert.match(unit, /^RestartSec=30s$/m);
  assert.match(unit, /^StartLimitIntervalSec=0$/m);
  const dir = tempDir(t);
  for (const host of ["master1", "storage1", "worker1"]) {
    const i = ign(ctx, host);
    const root = join(dir, host);
    mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
    cpSync("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
    for (const f of i.storage.files) {
      mkdirSync(dirname(join(root, f.path)), { recursive: true });
      writeFileSync(join(root, f.path), Buffer.from(f.contents.source.split(",")[1]!, "base64"), { mode: f.mode });
    }
    const units = i.systemd.units.filter((u) => u.contents !== undefined);
    mkdirSync(join(root, "etc/systemd/system"), { recursive: true });
    for (const u of units) writeFileSync(join(root, "etc/systemd/system", u.name), u.contents!);
    mkdirSync(join(root, "opt/bin"), { recursive: true });
    writeFileSync(join(root, "opt/bin/k3s"), "#!/bin/sh\n", { mode: 0o755 });
    const r = spawnSync("systemd-analyze", ["verify", "--man=no", `--root=${root}`, ...units.map((u) => u.name)], { encoding: "utf8" });
    assert.equal(r.status, 0, `${host}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /ordering cycle|Unknown (key|section)|Failed to|not executable/, `${host}: ${r.stderr}`);
  }
});

/** Runs the install script with a fake curl (failing its first `failures` calls) and a sleep that only records, in a private /opt. */
function runInstall(t: { after: (fn: () => void) => void }, failures: number) {
  const dir = tempDir(t);
  const bin = join(dir, "fake");
  mkdirSync(bin);
  const k3s = "#!/bin/sh\necho 'k3s version v1.33.4+k3s1 (fake)'\n";
  const sum = spawnSync("sha256sum", { input: k3s, encoding: "utf8" }).stdout.split(" ")[0];
  writeFileSync(join(dir, "k3s"), k3s);
  writeFileSync(join(dir, "sums"), `${sum}  k3s\n`);
  writeFileSync(
    join(bin, "curl"),
    [
      "#!/bin/bash",
      `n=$(cat ${dir}/calls 2>/dev/null || echo 0); echo $((n + 1)) > ${dir}/calls`,
      `if [ "$n" -lt ${failures} ]; then echo "curl: (6) Could not resolve host: github.com" >&2; exit 6; fi`,
      'while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift 2;; -*) shift;; *) url=$1; shift;; esac; done',
      `case "$url" in */sha256sum-amd64.txt) cp ${dir}/sums "$out";; */k3s) cp ${dir}/k3s "$out";; *) exit 22;; esac`,
    ].join("\n"),
  );
  writeFileSync(join(bin, "sleep"), `#!/bin/sh\necho "$1" >> ${dir}/slept\n`);
  chmodSync(join(bin, "curl"), 0o755);
  chmodSync(join(bin, "sleep"), 0o755);
  writeFileSync(join(dir, "install.sh"), k3sInstallScript(contextFor()));
  const r = spawnSync("unshare", ["--mount", "--propagation", "private", "bash", "-c", `mount -t tmpfs tmpfs /opt && PATH=${bin}:$PATH bash ${dir}/install.sh; rc=$?; /opt/bin/k3s --version 2>/dev/null; readlink /opt/bin/kubectl; exit $rc`], { encoding: "utf8" });
  const slept = spawnSync("cat", [join(dir, "slept")], { encoding: "utf8" }).stdout.split("\n").filter(Boolean).map(Number);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, slept };
}

test("the install script retries a failed download with doubling pauses, then installs the verified binary", (t) => {
  const ok = runInstall(t, 3);
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(ok.slept, [5, 10, 20]);
  assert.match(ok.stderr, /download of https:\/\/github\.com\/k3s-io\/k3s\/releases\/download\/v1\.33\.4%2Bk3s1\/k3s failed \(attempt 3\); retrying in 20s/);
  assert.match(ok.stdout, /k3s version v1\.33\.4\+k3s1 \(fake\)\nk3s\n/);
  const never = runInstall(t, 1000);
  assert.equal(never.status, 1);
  assert.equal(never.slept.length, K3S_INSTALL_ATTEMPTS - 1);
  assert.equal(Math.max(...never.slept), K3S_INSTALL_MAX_DELAY_S);
  assert.match(never.stderr, new RegExp(`failed ${K3S_INSTALL_ATTEMPTS} times; giving up`));
});

test("DNS: the node falls back to the upstream resolvers for public names; internal names and pods stay on the internal DNS", () => {
  const ctx = contextFor();
  const m1 = ign(ctx, "master1");
  const resolved = fileOf(m1, "/etc/systemd/resolved.conf.d/fmc.conf");
  assert.match(resolved, /^DNS=1\.1\.1\.1 9\.9\.9\.9$/m);
  assert.doesNotMatch(resolved, /^Domains=/m, "no global routing domain: the cluster domain is routed to the link only");
  const network = fileOf(m1, "/etc/systemd/network/00-eth0.network");
  assert.deepEqual([...network.matchAll(/^DNS=(.+)$/gm)].map((m) => m[1]), ["10.17.3.11"]);
  assert.match(network, /^Domains=microcloud\.lan$/m);
  const resolv = fileOf(m1, "/etc/rancher/k3s/resolv.conf");
  assert.deepEqual([...resolv.matchAll(/^nameserver (\S+)$/gm)].map((m) => m[1]), ["10.17.3.11"]);
  for (const h of [...servers, ...agents]) assert.equal(k3sCfg(ctx, h)["resolv-conf"], "/etc/rancher/k3s/resolv.conf", h);
  assert.equal(artifact(ctx, "k3s/worker1/resolv.conf"), resolv);
});

test("agents join with their own token; servers carry it as agent-token; every key is a real K3s flag", () => {
  assert.ok(requiredSecrets(contextFor().spec).some((s) => s.name === "k3s-agent-token" && s.kind === "token"));
  const ctx = contextFor();
  const server = ctx.secrets.get("k3s-token");
  const agent = ctx.secrets.get("k3s-agent-token");
  assert.notEqual(server, agent);
  for (const s of servers) {
    const cfg = k3sCfg(ctx, s);
    assert.equal(cfg.token, server, s);
    assert.equal(cfg["agent-token"], agent, s);
    for (const k of Object.keys(cfg)) assert.ok(K3S_SERVER_FLAGS.has(k), `${s}: ${k}`);
  }
  for (const a of agents) {
    const cfg = k3sCfg(ctx, a);
    assert.equal(cfg.token, agent, a);
    assert.ok(!artifact(ctx, `k3s/${a}/config.yaml`).includes(server), `${a} must not hold the server token`);
    for (const k of Object.keys(cfg)) assert.ok(K3S_AGENT_FLAGS.has(k), `${a}: ${k}`);
  }
  assert.match(ctx.secrets.mask(artifact(ctx, "k3s/worker1/config.yaml")), /^token: <secret:k3s-agent-token>$/m);
});

test("etcd snapshots: schedule and retention from the spec, etcd-s3 keys K3s knows, credentials only from the servers' environment file", () => {
  const yaml = seedWith(
    "  etcdS3: { endpoint: minio.microcloud.lan:9000, bucket: fmc-etcd, folder: lab/etcd, region: eu-west-1, insecure: true }\n",
  ).replace('snapshotSchedule: "0 */6 * * *"', 'snapshotSchedule: "15 3 * * *"').replace("snapshotRetention: 20", "snapshotRetention: 7");
  const ctx = contextFor(yaml);
  const m2 = k3sCfg(ctx, "master2");
  assert.equal(m2["etcd-snapshot-schedule-cron"], "15 3 * * *");
  assert.equal(m2["etcd-snapshot-retention"], 7);
  const s3 = Object.fromEntries(Object.entries(m2).filter(([k]) => k.startsWith("etcd-s3")));
  assert.deepEqual(s3, {
    "etcd-s3": true,
    "etcd-s3-bucket": "fmc-etcd",
    "etcd-s3-endpoint": "minio.microcloud.lan:9000",
    "etcd-s3-folder": "lab/etcd",
    "etcd-s3-insecure": true,
    "etcd-s3-region": "eu-west-1",
  });
  for (const k of Object.keys(s3)) assert.ok(K3S_SERVER_FLAGS.has(k), k);
  assert.equal(k3sCfg(ctx, "worker1")["etcd-s3"], undefined, "agents take no etcd keys");
  assert.match(unitOf(ign(ctx, "master2"), "k3s.service"), /^EnvironmentFile=-\/etc\/rancher\/k3s\/etcd-s3\.env$/m);
  assert.doesNotMatch(unitOf(ign(ctx, "worker1"), "k3s-agent.service"), /EnvironmentFile/);
  assert.equal(k3sCfg(contextFor(), "master2")["etcd-s3"], undefined, "off unless the spec asks");
  // keys never inline: neither as etcdS3 fields nor through serverArgs
  const inline = problems(seedWith("  etcdS3: { bucket: fmc-etcd, secretKey: hunter2hunter2 }\n"));
  assert.ok(inline.some((p) => p.severity === "error" && /etcdS3/.test(p.path)), JSON.stringify(inline));
  const viaArgs = problems(seedWith('  serverArgs: { etcd-s3-secret-key: "hunter2hunter2" }\n'));
  assert.ok(viaArgs.some((p) => p.severity === "error" && p.path === "k3s.serverArgs.etcd-s3-secret-key" && /never go in the spec/.test(p.message)), JSON.stringify(viaArgs));
});

/** Default StorageClasses the rendered cluster ends up with: manifests, Longhorn's chart values, K3s's local-path unless disabled. */
function defaultStorageClasses(ctx: ClusterContext): string[] {
  const out: string[] = [];
  const arts = renderAll(ctx);
  for (const a of arts.filter((x) => x.path.startsWith("kubernetes/"))) {
    for (const doc of parseAllDocuments(a.content)) {
      const o = doc.toJSON() as { kind?: string; metadata?: { name: string; annotations?: Record<string, string> }; spec?: { chart: string; valuesContent: string } } | null;
      if (o?.kind === "StorageClass" && o.metadata?.annotations?.["storageclass.kubernetes.io/is-default-class"] === "true") out.push(o.metadata.name);
      if (o?.kind === "HelmChart" && o.spec?.chart === "longhorn" && parseYaml(o.spec.valuesContent).persistence?.defaultClass === true) out.push("longhorn");
    }
  }
  // K3s deploys local-path annotated as the default class unless --disable local-storage
  // (k3s-io/k3s manifests/local-storage.yaml); every server carries the same list
  const disabled = servers.map((s) => (parseYaml(arts.find((a) => a.path === `k3s/${s}/config.yaml`)!.content).disable as string[] | undefined) ?? []);
  if (!disabled.every((d) => d.includes("local-storage"))) out.push("local-path");
  return out;
}

test("exactly one default StorageClass: Longhorn's when it is enabled (local-storage disabled), else K3s's local-path", () => {
  assert.deepEqual(defaultStorageClasses(contextFor()), ["longhorn"]);
  const noLonghorn = SEED_YAML.replace("longhorn:      { repo", "longhorn:      { enabled: false, repo").replaceAll("storageClass: longhorn", "storageClass: nfs-shared");
  assert.notEqual(noLonghorn, SEED_YAML);
  assert.deepEqual(defaultStorageClasses(contextFor(noLonghorn)), ["local-path"]);
});

test("Flatcar reboots: update.conf leaves reboots to kured, which drains one node at a time on /run/reboot-required", () => {
  const ctx = contextFor();
  assert.match(fileOf(ign(ctx, "worker1"), "/etc/flatcar/update.conf"), /^GROUP=stable\nREBOOT_STRATEGY=off$/m);
  const text = artifact(ctx, "kubernetes/60-helmchart-kured.yaml");
  const hc = parseYaml(text.split("\n").slice(1).join("\n"));
  assert.deepEqual({ kind: hc.kind, chart: hc.spec.chart, repo: hc.spec.repo, version: hc.spec.version, ns: hc.spec.targetNamespace }, {
    kind: "HelmChart", chart: "kured", repo: "https://kubereboot.github.io/charts", version: "6.1.0", ns: "kube-system",
  });
  const values = parseYaml(hc.spec.valuesContent);
  assert.equal(values.configuration.concurrency, 1);
  assert.equal(values.configuration.rebootSentinel, "/run/reboot-required");
  assert.equal(values.configuration.forceReboot, false);
  // every value fmc sets is a key of the pinned chart's values.yaml
  const chart = parseYaml(readFileSync(join(ROOT, "test/fixtures/kured-values-6.1.0.yaml"), "utf8"));
  for (const k of Object.keys(values)) assert.ok(k in chart, `${k} is not a kured chart value`);
  for (const k of Object.keys(values.configuration)) assert.ok(k in chart.configuration, `configuration.${k} is not a kured chart value`);
  const windowed = parseYaml(parseYaml(artifact(contextFor(SEED_YAML.replace("coordinator: kured ", 'coordinator: kured, window: { start: "02:00", end: "05:00", timeZone: Europe/Madrid } }').replace("reboots:\n    coordinator", "reboots: { coordinator")), "kubernetes/60-helmchart-kured.yaml").split("\n").slice(1).join("\n")).spec.valuesContent);
  assert.deepEqual([windowed.configuration.startTime, windowed.configuration.endTime, windowed.configuration.timeZone], ["02:00", "05:00", "Europe/Madrid"]);
  const none = SEED_YAML.replace("coordinator: kured ", "coordinator: none ");
  assert.ok(!renderAll(contextFor(none)).some((a) => a.path.includes("kured")));
  assert.ok(problems(none).some((p) => p.severity === "warning" && p.path === "k3s.reboots.coordinator"));
});
