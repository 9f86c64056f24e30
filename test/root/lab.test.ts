// End to end on the lab: real hosts (systemd-nspawn, sshd, HAProxy, Keepalived) in
// network namespaces on this machine, driven by the real CLI. Needs root, like CI.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fmc, ROOT, tempDir, sleep, until } from "../helpers.js";
import { labExec, LABEL } from "../../src/lab/lab.js";
import { LAB_ROOT } from "../../src/lab/rootfs.js";
import { acquireLock } from "../../src/state/lock.js";
import { openJump, SshTransport } from "../../src/hosts/ssh.js";
import { fileChange, writeFileCommand } from "../../src/ops/file.js";
import { apply, plan } from "../../src/engine/run.js";
import type { Phase } from "../../src/phases/phase.js";
import { FAMILIES } from "../../src/hosts/os.js";
import { packageChange } from "../../src/ops/package.js";
import { hostnameChanges } from "../../src/ops/host.js";
import { directoryChange } from "../../src/ops/directory.js";
import { unitChanges, unitPath } from "../../src/ops/unit.js";
import { sysctlChanges } from "../../src/ops/sysctl.js";
import { mountChanges, mountUnit } from "../../src/ops/mount.js";
import { userChanges } from "../../src/ops/user.js";
import { guardedChange } from "../../src/ops/guarded.js";
import { slow, cmd, script } from "../../src/hosts/command.js";
import { inventory } from "../../src/engine/inventory.js";
import { context } from "../../src/project.js";

const VIP = "10.30.5.10";
let dir = "";
let spec = "";
const run = (...args: string[]) => fmc([...args], dir);

const inHost = (host: string, ...args: string[]) => labExec(host, args);
const holder = () => ["lb1", "lb2"].find((h) => spawnSync("ip", ["-n", `${LABEL}-${h}`, "-o", "-4", "addr", "show", "dev", "eth0"], { encoding: "utf8" }).stdout.includes(`${VIP}/`));
/** The backend that answered through the VIP: the lab's stand-in names its host. */
const curlVip = () => /^lab stand-in backend (\S+)$/m.exec(inHost("agent1", "curl", "-s", "--max-time", "2", `http://${VIP}/`).stdout)?.[1] ?? "";
const editSpec = (from: string, to: string) => {
  const text = readFileSync(spec, "utf8");
  assert.ok(text.includes(from), `spec lacks ${from}`);
  writeFileSync(spec, text.replace(from, to));
};

const PREFIX = join(tmpdir(), "fmc-lab-e2e-");
/** Set once this file's lab is up: after() then removes it whatever a test left behind. */
let ours = false;

before(async () => {
  dir = mkdtempSync(PREFIX);
  spec = join(dir, "cluster.yaml");
  copyFileSync(join(ROOT, "test/fixtures/lab-spec.yaml"), spec);
  // leftovers with no owner go; a lab of an earlier run of this file that crashed (its
  // temp dir still exists) is forced down; anyone else's lab stays and `up` says so
  const stale = run("lab", "down");
  if (stale.status !== 0 && stale.stderr.includes("LAB_NOT_OURS") && stale.stderr.includes(PREFIX)) run("lab", "down", "--force");
  const up = run("lab", "up", "--only", "loadbalancer,k3s-agent");
  assert.equal(up.status, 0, up.stderr);
  ours = true;
  assert.match(up.stdout, /lab labtest: 4 hosts up in [\d.]+ s/);
});

after(() => {
  const down = ours ? run("lab", "down", "--force") : { status: 0, stderr: "" };
  rmSync(dir, { recursive: true, force: true });
  assert.equal(down.status, 0, down.stderr);
});

test("the lab needs root and says so", (t) => {
  const d = tempDir(t);
  spawnSync("chown", ["nobody", d]);
  const r = spawnSync("runuser", ["-u", "nobody", "--", process.execPath, join(ROOT, "bin/fmc.js"), "lab", "up"], { cwd: d, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /error\[LAB_ROOT\] the lab needs root/);
  assert.match(r.stderr, /hint: run: sudo npx fmc lab up/);
});

test("lab status: every host runs and answers SSH", () => {
  const s = run("lab", "status");
  assert.equal(s.status, 0, s.stdout);
  for (const h of ["lb1", "lb2", "agent1", "agent2"]) assert.match(s.stdout, new RegExp(`${h}\\s+10\\.30\\.\\d+\\.\\d+\\s+running ssh ok`));
  // each host has its own hostname and filesystem
  assert.equal(inHost("lb1", "hostname").stdout.trim(), "lb1");
  assert.equal(inHost("agent2", "cat", "/etc/hostname").stdout.trim(), "agent2");
  // a fresh Debian: no daemon pre-installed, apt offers them from the local repository
  // only, and nothing keeps apt from starting what it installs
  assert.notEqual(inHost("lb1", "dpkg-query", "-W", "haproxy").status, 0, "haproxy is not pre-installed");
  const policy = inHost("lb1", "apt-cache", "policy", "haproxy", "keepalived").stdout;
  assert.match(policy, /Candidate: \d/);
  assert.match(policy, /file:\/opt\/fmc-lab\/apt/);
  assert.doesNotMatch(policy, /https?:/, "no other apt source");
  assert.equal(inHost("lb1", "test", "-e", "/usr/sbin/policy-rc.d").status, 1);
});

test("plan shows changes, apply converges, then plan is empty (exit 0)", () => {
  const p = run("plan", "--detailed-exitcode");
  assert.equal(p.status, 2, p.stderr);
  assert.match(p.stdout, /lb1 \(10\.30\.5\.11\)\n  base\n/);
  assert.match(p.stdout, /install haproxy, keepalived\n/);
  assert.match(p.stdout, /create \/etc\/haproxy\/haproxy\.cfg/);
  // planned from facts read before the install: the plan says what may happen
  assert.match(p.stdout, /enable, start or reload haproxy\.service \(installing its package may start it with the package's own config first\)/);
  const a = run("apply", "--yes");
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stdout, /Applied \d+ changes in/);
  // apt started HAProxy with the package's config (no frontends); fmc's config reached it
  const listening = inHost("lb1", "ss", "-Hltn").stdout;
  for (const port of [6443, 80, 443]) assert.match(listening, new RegExp(`:${port}\\s`), `HAProxy listens on ${port}`);
  assert.match(a.stderr, /\[lb1\] loadbalancer: reload \(configuration changed\) haproxy\.service\n/);
  const again = run("plan", "--detailed-exitcode");
  assert.equal(again.status, 0, again.stdout + again.stderr);
  assert.match(again.stdout, /No changes: the hosts match the spec\./);
  assert.equal(inHost("lb1", "systemctl", "is-active", "haproxy", "keepalived").stdout.trim(), "active\nactive");
  // a no-op apply reads each host's facts once
  const noop = run("apply", "--yes");
  assert.equal(noop.status, 0, noop.stderr);
  for (const h of ["lb1", "lb2"]) assert.equal(noop.stderr.split("\n").filter((l) => l === `[${h}] facts read`).length, 1, noop.stderr);
});

test("right after the first apply, the VIP answers HTTP from another host through fmc's HAProxy", async () => {
  // the agents' ingress NodePort is played by the lab's stand-in backend, which answers
  // with its host name; the package's haproxy.cfg has no frontend at all
  assert.match(await until("the VIP to answer HTTP", () => (/^agent[12]$/.test(curlVip()) ? curlVip() : undefined)), /^agent[12]$/);
});

test("node_exporter runs where Prometheus scrapes by address: lb1's metrics answer lb2 on 9100", () => {
  assert.equal(inHost("lb1", "systemctl", "is-active", "prometheus-node-exporter").stdout.trim(), "active");
  const m = inHost("lb2", "curl", "-sf", "--max-time", "5", "http://10.30.5.11:9100/metrics");
  assert.equal(m.status, 0, m.stderr);
  assert.match(m.stdout, /^node_uname_info\{.*nodename="lb1".*\} 1$/m);
});

test("the VIP answers from a third host, and moves when HAProxy stops on its holder", async (t) => {
  const first = await until("the VIP to answer", () => /^agent[12]$/.test(curlVip()) && holder());
  const other = first === "lb1" ? "lb2" : "lb1";
  assert.equal(inHost(first, "systemctl", "stop", "haproxy").status, 0);
  const started = Date.now();
  await until(`the VIP to move to ${other}`, () => holder() === other);
  const moved = Date.now() - started;
  const answer = await until("the VIP to answer again", () => (/^agent[12]$/.test(curlVip()) ? curlVip() : undefined));
  assert.match(answer, /^agent[12]$/);
  t.diagnostic(`VIP moved from ${first} to ${other} ${(moved / 1000).toFixed(1)} s after HAProxy stopped`);
  // the next plan notices the stopped HAProxy and apply brings it back
  const p = run("plan", "--detailed-exitcode");
  assert.equal(p.status, 2);
  assert.match(p.stdout, new RegExp(`${first} [\\s\\S]*start haproxy\\.service`));
  assert.equal(run("apply", "--yes").status, 0);
  // no preemption: the VIP stays where it went when the old holder's HAProxy is back
  await until(`${first}'s HAProxy to answer again`, () => inHost(first, "systemctl", "is-active", "haproxy").stdout.trim() === "active");
  await sleep(1500);
  assert.equal(holder(), other, "no second move (nopreempt)");
});

test("changing one spec value plans exactly that change", () => {
  editSpec("check: { interMs: 1000, fall: 2, rise: 1 }", "check: { interMs: 1500, fall: 2, rise: 1 }");
  const p = run("plan", "--json");
  assert.equal(p.status, 0, p.stderr);
  const changes = JSON.parse(p.stdout).changes as Array<{ host: string; title: string; diff?: string; notes: string[] }>;
  assert.deepEqual(
    changes.map((c) => `${c.host}: ${c.title}`).sort(),
    ["lb1: reload (configuration changed) haproxy.service", "lb1: update /etc/haproxy/haproxy.cfg", "lb2: reload (configuration changed) haproxy.service", "lb2: update /etc/haproxy/haproxy.cfg"],
  );
  const diff = changes.find((c) => c.host === "lb1" && c.diff)!.diff!;
  assert.match(diff, /^-    default-server check inter 1000ms fall 2 rise 1$/m);
  assert.match(diff, /^\+    default-server check inter 1500ms fall 2 rise 1$/m);
  const vipHolder = holder()!;
  const reload = changes.find((c) => c.host === vipHolder && c.title.startsWith("reload"))!;
  assert.deepEqual(reload.notes, [`reloads HAProxy on ${vipHolder} while it holds VIP api (${VIP})`]);
  const unconfirmed = run("apply");
  assert.equal(unconfirmed.status, 1);
  assert.match(unconfirmed.stderr, /error\[CONFIRM\] apply needs confirmation and stdin is not a terminal to ask\n\s+hint: use --yes/);
  assert.equal(run("plan", "--detailed-exitcode").status, 2, "nothing was applied without confirmation");
  assert.equal(run("apply", "--yes").status, 0);
  assert.equal(run("plan", "--detailed-exitcode").status, 0);
});

test("a config that fails its check never replaces the working one", async () => {
  const { ctx, stateDir } = context({ file: spec });
  const inv = inventory(ctx.spec, stateDir);
  const before = inHost("lb1", "cat", "/etc/haproxy/haproxy.cfg").stdout;
  const t = await SshTransport.connect(inv.targets.get("lb1")!, { privateKeys: [ctx.secrets.adminPrivateKey()!], knownHostsFile: inv.knownHostsFile });
  try {
    const r = await t.exec(writeFileCommand({ path: "/etc/haproxy/haproxy.cfg", content: "global\n    no-such-directive 1\n", validate: "haproxy -c -q -f %s" }), "broken config");
    assert.equal(r.code, 3);
    assert.match(r.stderr, /failed its check; the current file is unchanged/);
  } finally {
    t.close();
  }
  assert.equal(inHost("lb1", "cat", "/etc/haproxy/haproxy.cfg").stdout, before);
  assert.equal(inHost("lb1", "sh", "-c", "ls /etc/haproxy | grep -c fmc-tmp || true").stdout.trim(), "0");
  assert.equal(inHost("lb1", "systemctl", "is-active", "haproxy").stdout.trim(), "active");
});

test("a second apply is refused while one holds the lock", () => {
  const { stateDir } = context({ file: spec });
  const lock = acquireLock(stateDir);
  try {
    const r = run("apply", "--yes");
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`error\\[LOCKED\\] another fmc apply is running \\(pid ${process.pid}`));
  } finally {
    lock.release();
  }
});

test("an SSH connection lost mid-apply names the host, leaves no half-written file, and a re-run completes", async () => {
  editSpec("check: { interMs: 1500, fall: 2, rise: 1 }", "check: { interMs: 2000, fall: 2, rise: 1 }");
  const child = spawn(process.execPath, [join(ROOT, "bin/fmc.js"), "apply", "--yes"], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1", FMC_TEST_PAUSE_BEFORE_RENAME: "2" },
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  await until("apply to start writing on lb2", () => stderr.includes("[lb2] loadbalancer: update /etc/haproxy/haproxy.cfg"));
  await sleep(300);
  const killed = inHost("lb2", "pkill", "-KILL", "-x", "sshd");
  assert.equal(killed.status, 0, "sshd was running on lb2");
  const code = await exited;
  assert.equal(code, 1, stderr);
  assert.match(stderr, /lb2: lost the SSH connection during loadbalancer: update \/etc\/haproxy\/haproxy\.cfg/);
  // whatever the remote shell managed to do, the file is whole: old or new, never half
  await sleep(2500);
  assert.equal(inHost("lb2", "sh", "-c", "ls -a /etc/haproxy | grep -c fmc-tmp || true").stdout.trim(), "0");
  const cfg = inHost("lb2", "cat", "/etc/haproxy/haproxy.cfg").stdout;
  assert.match(cfg, /default-server check inter (1500|2000)ms fall 2 rise 1\n/);
  assert.equal(inHost("lb2", "haproxy", "-c", "-q", "-f", "/etc/haproxy/haproxy.cfg").status, 0);
  // sshd back (systemd may already have restarted it), then the re-run converges
  inHost("lb2", "systemctl", "start", "ssh");
  await until("sshd on lb2", () => inHost("lb2", "systemctl", "is-active", "ssh").stdout.trim() === "active");
  const rerun = run("apply", "--yes");
  assert.equal(rerun.status, 0, rerun.stderr);
  const final = run("plan", "--detailed-exitcode");
  assert.equal(final.status, 0, final.stdout);
  assert.match(inHost("lb2", "cat", "/etc/haproxy/haproxy.cfg").stdout, /inter 2000ms/);
});

test("SSH: unknown host keys need --accept-new, changed ones are refused; sudo and a jump host work", async (t) => {
  const { ctx, stateDir } = context({ file: spec });
  const inv = inventory(ctx.spec, stateDir);
  const key = ctx.secrets.adminPrivateKey()!;
  const lb1 = inv.targets.get("lb1")!;
  const kh = join(tempDir(t), "known_hosts");
  writeFileSync(kh, "");
  await assert.rejects(SshTransport.connect(lb1, { privateKeys: [key], knownHostsFile: kh }), /unknown host key for lb1 \(10\.30\.5\.11\); run with --accept-new/);
  const first = await SshTransport.connect(lb1, { privateKeys: [key], knownHostsFile: kh, acceptNew: true });
  first.close();
  assert.match(readFileSync(kh, "utf8"), /^10\.30\.5\.11 ssh-ed25519 \S+$/m);
  // lb2's key presented as lb1's: a changed host key is refused even with --accept-new
  const lb2Key = readFileSync(inv.knownHostsFile, "utf8").split("\n").find((l) => l.startsWith("10.30.5.12 "))!.split(" ").slice(1).join(" ");
  writeFileSync(kh, `10.30.5.11 ${lb2Key}\n`);
  await assert.rejects(SshTransport.connect(lb1, { privateKeys: [key], knownHostsFile: kh, acceptNew: true }), /HOST KEY CHANGED for lb1/);

  // a non-root user: commands run through sudo
  const setup = inHost("lb1", "sh", "-c", [
    "id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash deploy",
    "install -d -m 700 -o deploy -g deploy /home/deploy/.ssh",
    "install -m 600 -o deploy -g deploy /root/.ssh/authorized_keys /home/deploy/.ssh/authorized_keys",
    "echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy && chmod 440 /etc/sudoers.d/deploy",
  ].join(" && "));
  assert.equal(setup.status, 0, setup.stderr);
  const asDeploy = await SshTransport.connect({ ...lb1, user: "deploy" }, { privateKeys: [key], knownHostsFile: inv.knownHostsFile });
  try {
    const r = await asDeploy.exec(cmd("sh", "-c", "echo $(id -u) $SUDO_USER"), "whoami");
    assert.equal(r.stdout.trim(), "0 deploy");
  } finally {
    asDeploy.close();
  }

  // through a jump host: agent1 reached via lb1
  const viaJump = await SshTransport.connect(inv.targets.get("agent1")!, { privateKeys: [key], knownHostsFile: inv.knownHostsFile, jump: lb1 });
  try {
    assert.equal((await viaJump.exec(cmd("hostname"), "hostname")).stdout.trim(), "agent1");
  } finally {
    viaJump.close();
  }
  const p = run("plan", "--jump", "lb1", "--detailed-exitcode");
  assert.equal(p.status, 0, p.stdout + p.stderr);
});

test("SSH: a command past its timeout is stopped on the host too; output is capped; remote errors are masked; one jump connection", async () => {
  const { ctx, stateDir } = context({ file: spec });
  const inv = inventory(ctx.spec, stateDir);
  const base = { privateKeys: [ctx.secrets.adminPrivateKey()!], knownHostsFile: inv.knownHostsFile, mask: (t: string) => ctx.secrets.mask(t) };
  const t = await SshTransport.connect(inv.targets.get("lb1")!, { ...base, commandTimeoutMs: 1500, maxOutputBytes: 4096 });
  try {
    const marker = `sleep 297.${process.pid}`;
    await assert.rejects(t.exec(cmd("sh", "-c", `${marker}; echo never`), "a slow step"), /lb1: a slow step did not finish within 1\.5 s; it was stopped/);
    await until("the remote command to be gone", () => inHost("lb1", "pgrep", "-f", marker).status === 1, 10_000);
    // a step slow by nature (a package install) gets its own longer limit
    assert.equal((await t.exec(slow(cmd("sh", "-c", "sleep 2.5; echo done"), 10), "a slow-by-nature step")).stdout.trim(), "done");
    await assert.rejects(t.exec(cmd("head", "-c", "100000", "/dev/zero"), "a chatty step"), /lb1: a chatty step printed more than 4096 bytes; it was stopped/);
    // the connection is still good, and what the host prints on stderr is masked
    const token = ctx.secrets.get("k3s-token");
    const r = await t.exec(script(`printf 'token: %s\\n' "$(base64 -d)" >&2; exit 3`, "a failing step", { data: Buffer.from(token).toString("base64"), secret: true }), "a failing step");
    assert.equal(r.code, 3);
    assert.match(r.stderr, /token: <secret:k3s-token>/);
    assert.ok(!r.stderr.includes(token));
  } finally {
    t.close();
  }
  // every target through one shared connection to the jump host
  const lb1 = inv.targets.get("lb1")!;
  const via = await openJump(lb1, base);
  const through = await Promise.all(["lb2", "agent1", "agent2"].map((h) => SshTransport.connect(inv.targets.get(h)!, { ...base, jump: lb1, via })));
  try {
    assert.deepEqual(await Promise.all(through.map(async (x) => (await x.exec(cmd("hostname"), "hostname")).stdout.trim())), ["lb2", "agent1", "agent2"]);
    const sessions = inHost("lb1", "ss", "-Htn", "state", "established", "( sport = :22 )").stdout.trim().split("\n").filter(Boolean);
    assert.equal(sessions.length, 1, `SSH connections into lb1: ${sessions.join(" | ")}`);
  } finally {
    through.forEach((x) => x.close());
    via.end();
  }
});

test("an unreachable host is named; plan shows the others and exits 1; apply changes nothing", async () => {
  // SYNs to agent2's sshd vanish, as with a host that is down: no refusal, just silence
  const block = "table inet fmc_test_block {\n chain input {\n  type filter hook input priority -10; tcp dport 22 drop\n }\n}\n";
  assert.equal(spawnSync("ip", ["netns", "exec", `${LABEL}-agent2`, "nft", "-f", "-"], { input: block }).status, 0);
  try {
    editSpec("check: { interMs: 2000, fall: 2, rise: 1 }", "check: { interMs: 2500, fall: 2, rise: 1 }");
    const started = Date.now();
    const p = run("plan", "--timeout", "2");
    assert.equal(p.status, 1, p.stdout + p.stderr);
    assert.match(p.stderr, /unreachable agent2: agent2: cannot connect to root@10\.30\.4\.25/);
    assert.match(p.stdout, /lb1 \(10\.30\.5\.11\)[\s\S]*update \/etc\/haproxy\/haproxy\.cfg/, "the reachable hosts are planned");
    assert.ok(Date.now() - started < 15_000, "the unreachable host did not hold the plan for the default 15 s");
    const a = run("apply", "--yes", "--timeout", "2");
    assert.equal(a.status, 1);
    assert.match(a.stderr, /error\[UNREACHABLE\] 1 host could not be reached; nothing was applied/);
    assert.match(inHost("lb1", "cat", "/etc/haproxy/haproxy.cfg").stdout, /inter 2000ms/, "nothing changed");
  } finally {
    spawnSync("ip", ["netns", "exec", `${LABEL}-agent2`, "nft", "delete", "table", "inet", "fmc_test_block"]);
  }
  await until("agent2 to answer again", () => run("lab", "status").status === 0, 20_000);
  assert.equal(run("apply", "--yes").status, 0);
  assert.equal(run("plan", "--detailed-exitcode").status, 0);
});

test("authorized_keys: fmc's block is added, the keys already there stay, SSH keeps working", () => {
  const keys = inHost("lb1", "cat", "/root/.ssh/authorized_keys").stdout;
  const admin = context({ file: spec }).ctx.secrets.adminPublicKey()!;
  // lab up wrote the admin key before any apply: it stays outside fmc's block
  assert.ok(keys.startsWith(`${admin}\n`), keys);
  assert.match(keys, /# BEGIN fmc managed keys[^\n]*\n# END fmc managed keys\n$/);
  // an operator's key added by hand survives the next apply
  const own = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorOwnKeyOperatorOwnKeyOperatorOwnK operator@laptop";
  assert.equal(inHost("lb1", "sh", "-c", `echo '${own}' >> /root/.ssh/authorized_keys`).status, 0);
  assert.equal(run("apply", "--yes").status, 0);
  assert.ok(inHost("lb1", "cat", "/root/.ssh/authorized_keys").stdout.includes(own));
  assert.equal(run("plan", "--detailed-exitcode").status, 0, "converged, and fmc still logs in");
});

test("plan → apply → plan is empty for every operation, on a real host", async () => {
  const { ctx, stateDir } = context({ file: spec });
  const inv = inventory(ctx.spec, stateDir);
  const host = ctx.topo.host("agent1");
  const t = await SshTransport.connect(inv.targets.get("agent1")!, { privateKeys: [ctx.secrets.adminPrivateKey()!], knownHostsFile: inv.knownHostsFile });
  const transports = new Map([["agent1", t]]);
  const pc = { render: ctx, mask: (x: string) => ctx.secrets.mask(x), loginUser: () => "root" };
  const probe: Phase = {
    name: "probe",
    description: "every operation once",
    hosts: () => [host],
    facts: () => ({
      files: new Set(["/etc/fmc-probe.conf", "/etc/hostname", unitPath("fmc-probe.service"), unitPath(mountUnit("/mnt/fmc-probe")), "/etc/sysctl.d/90-fmc-probe.conf", "/home/fmcprobe/.ssh/authorized_keys"]),
      dirs: new Set(["/srv/fmc-probe"]),
      units: new Set(["fmc-probe.service", mountUnit("/mnt/fmc-probe")]),
      packages: new Set(["haproxy"]),
      sysctl: new Set(["net.ipv4.conf.all.forwarding"]),
      users: new Set(["fmcprobe"]),
      guards: new Map([["probe-done", "test -f /var/lib/fmc-probe.done"]]),
      storage: true,
    }),
    plan(p, h, f) {
      const c = { host: h.name, phase: "probe", mask: p.mask };
      const family = FAMILIES[f.os.family];
      return [
        ...[packageChange(f, family, ["haproxy"], c)],
        ...hostnameChanges(f, h.name, c),
        fileChange(f, { path: "/etc/fmc-probe.conf", content: "probe = 1\n", mode: 0o640, validate: "grep -q probe %s" }, c),
        directoryChange(f, { path: "/srv/fmc-probe", mode: 0o750 }, c),
        ...unitChanges(f, { unit: "fmc-probe.service", content: "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n", enabled: true, running: true }, c),
        ...sysctlChanges(f, "/etc/sysctl.d/90-fmc-probe.conf", { "net.ipv4.conf.all.forwarding": "1" }, c),
        ...mountChanges(f, { what: "tmpfs", where: "/mnt/fmc-probe", type: "tmpfs", options: "size=1m" }, c),
        ...userChanges(f, { name: "fmcprobe", keys: [ctx.secrets.adminPublicKey()!] }, c),
        guardedChange(f, { id: "probe-done", title: "first-run step", unless: "test -f /var/lib/fmc-probe.done", run: "touch /var/lib/fmc-probe.done" }, c),
      ].filter((x): x is NonNullable<typeof x> => !!x);
    },
  };
  const forwardingHere = readFileSync("/proc/sys/net/ipv4/conf/all/forwarding", "utf8");
  try {
    const first = await plan(pc, [probe], transports, { concurrency: 1 });
    const titles = first.changes.map((c) => c.title);
    for (const want of [/^install haproxy$/, /^create \/etc\/fmc-probe\.conf$/, /^create directory \/srv\/fmc-probe/, /fmc-probe\.service$/, /90-fmc-probe\.conf$/, /mnt-fmc\\x2dprobe\.mount$/, /^create user fmcprobe$/, /^first-run step$/]) {
      assert.ok(titles.some((x) => want.test(x)), `no change matching ${want}: ${titles.join(" | ")}`);
    }
    await apply(first, transports, { concurrency: 1 });
    const second = await plan(pc, [probe], transports, { concurrency: 1 });
    assert.deepEqual(second.changes.map((c) => c.title), [], "the second plan is empty");
    // and the operations did what they say
    assert.equal(inHost("agent1", "systemctl", "is-active", "fmc-probe.service").stdout.trim(), "active");
    assert.match(inHost("agent1", "findmnt", "-no", "FSTYPE", "/mnt/fmc-probe").stdout, /tmpfs/);
    assert.equal(inHost("agent1", "stat", "-c", "%a", "/srv/fmc-probe", "/etc/fmc-probe.conf").stdout, "750\n640\n");
    assert.equal(inHost("agent1", "cat", "/proc/sys/net/ipv4/conf/all/forwarding").stdout.trim(), "1");
    assert.equal(readFileSync("/proc/sys/net/ipv4/conf/all/forwarding", "utf8"), forwardingHere, "this machine's own setting is untouched");
  } finally {
    t.close();
  }
});

test("fmc lab reboot: a container host boots again on its own disk, its enabled services start, and SSH answers", async () => {
  // PID 1's start (clock ticks since this kernel booted): containers share the kernel, so a new boot is a new PID 1
  const pid1Start = () => labExec("lb2", ["cat", "/proc/1/stat"]).stdout.split(") ")[1]?.split(" ")[19];
  const first = pid1Start();
  assert.ok(first);
  assert.equal(labExec("lb2", ["sh", "-c", "echo kept > /var/lib/fmc-reboot-mark"]).status, 0);
  const r = run("lab", "reboot", "lb2");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^lb2 rebooted: SSH answers again after \d+\.\d s$/m);
  assert.notEqual(pid1Start(), first, "a new boot");
  assert.equal(labExec("lb2", ["cat", "/var/lib/fmc-reboot-mark"]).stdout.trim(), "kept", "its own disk");
  await until("HAProxy and Keepalived after the reboot", () => labExec("lb2", ["systemctl", "is-active", "haproxy", "keepalived"]).stdout.trim() === "active\nactive" || undefined, 30_000);
  assert.equal(run("plan", "--detailed-exitcode").status, 0, "nothing to repair");
  const bad = run("lab", "reboot", "nosuch");
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /error\[LAB_HOST\] no lab host nosuch/);
});

test("lab down from another state directory leaves this lab alone and names its owner", (t) => {
  const other = tempDir(t);
  const refused = run("lab", "down", "--state", other);
  assert.equal(refused.status, 1);
  assert.ok(refused.stderr.includes(`error[LAB_NOT_OURS] the lab labtest (4 hosts) belongs to state directory ${dir}/.fmc (spec ${dir}/cluster.yaml), not to ${other}`), refused.stderr);
  assert.ok(refused.stderr.includes(`hint: its owner removes it: cd ${dir} && fmc lab down -f cluster.yaml; or remove it from here with: fmc lab down --force`), refused.stderr);
  const s = run("lab", "status");
  assert.equal(s.status, 0, s.stdout);
  assert.match(s.stdout, new RegExp(`lab labtest, owned by ${dir}/\\.fmc`));
  assert.equal(existsSync(join(dir, ".fmc/lab/inventory.json")), true);
});

test("lab down leaves no namespace, mount, process or interface behind", () => {
  // a leftover of a crashed run: found by its label
  assert.equal(spawnSync("ip", ["netns", "add", `${LABEL}-stray`]).status, 0);
  const down = run("lab", "down");
  assert.equal(down.status, 0, down.stderr);
  assert.doesNotMatch(spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout, new RegExp(LABEL));
  assert.notEqual(spawnSync("ip", ["link", "show", `${LABEL}0`]).status, 0);
  assert.doesNotMatch(readFileSync("/proc/mounts", "utf8"), new RegExp(join(LAB_ROOT, "labs")));
  assert.equal(spawnSync("pgrep", ["-f", `systemd-nspawn .*${LAB_ROOT}/labs`]).status, 1, "no nspawn left");
  assert.doesNotMatch(spawnSync("ip", ["route"], { encoding: "utf8" }).stdout, /10\.30\./);
  const again = run("lab", "down");
  assert.equal(again.status, 0);
  assert.match(again.stdout, /no lab to remove/);
  assert.equal(existsSync(join(dir, ".fmc/lab/inventory.json")), false, "the inventory overlay is gone: plan targets the spec again");
});

test("another checkout's lab needs --force; ownerless leftovers go; a corrupt lab.json is a coded error", (t) => {
  const stateFile = join(LAB_ROOT, "lab.json");
  const other = tempDir(t); // another checkout's state directory
  const stray = () => spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout.includes(`${LABEL}-stray`);
  const fake = (stateDir: string) => {
    assert.equal(spawnSync("ip", ["netns", "add", `${LABEL}-stray`]).status, 0);
    writeFileSync(stateFile, JSON.stringify({ lab: "elsewhere", stateDir, specFile: join(other, "cluster.yaml"), rootLinks: [], hosts: [] }));
  };
  fake(other);
  const refused = run("lab", "down");
  assert.equal(refused.status, 1);
  assert.ok(refused.stderr.includes(`error[LAB_NOT_OURS] the lab elsewhere (0 hosts) belongs to state directory ${other} (spec ${other}/cluster.yaml)`), refused.stderr);
  assert.ok(refused.stderr.includes(`cd ${other} && fmc lab down -f cluster.yaml --state ${other}`), refused.stderr);
  assert.ok(stray() && existsSync(stateFile), "nothing was removed");
  const forced = run("lab", "down", "--force");
  assert.equal(forced.status, 0, forced.stderr);
  assert.ok(!stray() && !existsSync(stateFile));

  // the owner's state directory is gone: a leftover anyone removes
  fake(join(other, "gone"));
  const leftover = run("lab", "down");
  assert.equal(leftover.status, 0, leftover.stderr);
  assert.ok(!stray() && !existsSync(stateFile));

  // not JSON, or not a lab state: a coded error with a hint, never a stack trace
  for (const [text, why] of [["{not json", /Expected property name|JSON/], [JSON.stringify({ lab: "x", stateDir: "relative/dir" }), /stateDir: must be an absolute path/]] as const) {
    writeFileSync(stateFile, text);
    for (const args of [["lab", "down"], ["lab", "status"]]) {
      const r = run(...args);
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`^error\\[LAB_STATE\\] ${stateFile} is not a valid lab state file \\(`));
      assert.match(r.stderr, why);
      assert.match(r.stderr, /hint: fmc lab down --force removes whatever lab is on this machine/);
      assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
    }
  }
  assert.equal(run("lab", "down", "--force").status, 0);
  assert.equal(existsSync(stateFile), false);
});
