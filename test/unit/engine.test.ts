// Engine tests without hosts: facts parsed from captured output, pure operations from
// (facts, desired), generated scripts run by the real bash on temp files, and plan/apply
// over a recording transport.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseFacts, factScript, emptyRequest, type HostFacts } from "../../src/hosts/facts.js";
import { cmd } from "../../src/hosts/command.js";
import { quote } from "../../src/shell.js";
import { fileChange, writeFileCommand } from "../../src/ops/file.js";
import { serviceChange } from "../../src/ops/service.js";
import { sysctlChanges } from "../../src/ops/sysctl.js";
import { lvmChanges } from "../../src/ops/lvm.js";
import { mountChanges, mountUnit } from "../../src/ops/mount.js";
import { guardedChange } from "../../src/ops/guarded.js";
import { swapOffChange } from "../../src/ops/host.js";
import { userChanges } from "../../src/ops/user.js";
import { directoryChange } from "../../src/ops/directory.js";
import { RecordingTransport } from "../../src/hosts/transport.js";
import { plan, apply } from "../../src/engine/run.js";
import { PHASES } from "../../src/phases/index.js";
import { haproxyConfig } from "../../src/render/haproxy.js";
import { contextFor, tempDir } from "../helpers.js";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const ctx = { host: "h1", phase: "test", mask: (t: string) => t.replace(/hunter2/g, "<secret:pw>") };

function factsText(extra: Partial<Record<string, string[]>> = {}): string {
  const sections: Record<string, string[]> = {
    os: ['PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"', "ID=debian", 'VERSION_ID="12"'],
    hostname: ["h1"],
    addr: ["lo 127.0.0.1/8", "eth0 10.17.5.11/24", "eth0 10.17.5.10/24"],
    swap: [],
    units: ["Id=haproxy.service", "ActiveState=active", "UnitFileState=enabled", "", "Id=keepalived.service", "ActiveState=inactive", "UnitFileState=disabled"],
    packages: ["haproxy install ok installed", "keepalived install ok installed", "chrony unknown ok not-installed"],
    sysctl: ["net.ipv4.ip_forward=0", "vm.swappiness!60", "net.bridge.bridge-nf-call-iptables"],
    files: [`/etc/app.conf 644 root root ${b64("a=1\npassword=hunter2\n")}`, "/etc/missing.conf -"],
    dirs: ["/srv/data 755 root root", "/srv/none -"],
    users: ["core:x:500:500::/home/core:/bin/bash", "ghost"],
    guard: ["done-already 0", "not-yet 1"],
    mounts: ["/dev/vda1 / ext4 rw 0 0", "/dev/data/shared_lv /srv/nfs/shared ext4 rw,noatime 0 0"],
    lsblk: [JSON.stringify({ blockdevices: [{ name: "/dev/vdb", size: 85899345920, type: "disk", fstype: null }, { name: "/dev/vdc", size: 1073741824, type: "disk", fstype: "ext4" }] })],
    vgs: [],
    lvs: [],
    ...extra,
  };
  return Object.entries(sections).map(([k, v]) => [`@${k}`, ...v].join("\n")).join("\n") + "\n@end\n";
}
const facts = (extra?: Partial<Record<string, string[]>>): HostFacts => parseFacts("h1", factsText(extra));

test("facts parse into typed values", () => {
  const f = facts();
  assert.deepEqual(f.os, { id: "debian", versionId: "12", family: "debian-like" });
  assert.deepEqual(f.addresses.get("eth0"), ["10.17.5.11/24", "10.17.5.10/24"]);
  assert.deepEqual(f.units.get("keepalived.service"), { active: "inactive", enabled: "disabled" });
  assert.equal(f.packages.get("haproxy"), true);
  assert.equal(f.packages.get("chrony"), false);
  assert.deepEqual(f.sysctl.get("vm.swappiness"), { value: "60", writable: false });
  assert.equal(f.sysctl.get("net.bridge.bridge-nf-call-iptables"), null);
  assert.equal(f.files.get("/etc/app.conf")?.content, "a=1\npassword=hunter2\n");
  assert.equal(f.files.get("/etc/missing.conf"), null);
  assert.equal(f.users.get("core")?.home, "/home/core");
  assert.equal(f.users.get("ghost"), null);
  assert.equal(f.guards.get("done-already"), 0);
  assert.equal(f.mounts.get("/srv/nfs/shared")?.device, "/dev/data/shared_lv");
  assert.equal(f.blockDevices.get("/dev/vdb")?.size, 80 * 1024 ** 3);
  assert.throws(() => parseFacts("h1", "@os\nID=debian\n"), /h1: could not read facts/);
});

test("the fact script is valid shell and reads this machine", () => {
  const req = emptyRequest();
  req.files.add("/etc/hostname");
  req.sysctl.add("net.ipv4.ip_forward");
  req.guards.set("true-guard", "true");
  req.storage = true;
  const r = spawnSync("bash", ["-c", factScript(req)], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const f = parseFacts("local", r.stdout);
  assert.equal(f.files.get("/etc/hostname")?.content, readFileSync("/etc/hostname", "utf8"));
  assert.equal(f.guards.get("true-guard"), 0);
  assert.ok(f.mounts.has("/"));
});

test("file: no change when equal; a masked diff when not; mode-only changes say so", () => {
  const f = facts();
  assert.equal(fileChange(f, { path: "/etc/app.conf", content: "a=1\npassword=hunter2\n" }, ctx), undefined);
  const c = fileChange(f, { path: "/etc/app.conf", content: "a=2\npassword=hunter2\n" }, ctx)!;
  assert.equal(c.title, "update /etc/app.conf");
  assert.match(c.diff!, /^-a=1$/m);
  assert.match(c.diff!, /^\+a=2$/m);
  assert.doesNotMatch(c.diff!, /hunter2/);
  const m = fileChange(f, { path: "/etc/app.conf", content: "a=1\npassword=hunter2\n", mode: 0o600 }, ctx)!;
  assert.equal(m.diff, undefined);
  assert.deepEqual(m.notes, ["mode/owner 644 root:root -> 600 root:root"]);
  assert.equal(fileChange(f, { path: "/etc/missing.conf", content: "x\n" }, ctx)!.title, "create /etc/missing.conf");
});

test("file writes are atomic and checked: the real bash runs the generated script", (t) => {
  const dir = tempDir(t);
  const target = join(dir, "sub", "app.cfg");
  const me = { user: spawnSync("id", ["-un"], { encoding: "utf8" }).stdout.trim(), group: spawnSync("id", ["-gn"], { encoding: "utf8" }).stdout.trim() };
  const run = (content: string, validate?: string) => {
    // owned by whoever runs the tests: chown to root needs root
    const c = writeFileCommand({ path: target, content, mode: 0o640, validate, owner: me.user, group: me.group });
    return spawnSync("bash", ["-c", c.shell], { input: c.stdin, encoding: "utf8" });
  };
  assert.equal(run("one\n").status, 0);
  assert.equal(readFileSync(target, "utf8"), "one\n");
  assert.equal(run("two\n", "grep -q two %s").status, 0);
  assert.equal(readFileSync(target, "utf8"), "two\n");
  assert.equal(readFileSync(`${target}.fmc-prev`, "utf8"), "one\n", "the previous version is kept");
  const bad = run("three\n", "grep -q nope %s");
  assert.equal(bad.status, 3);
  assert.match(bad.stderr, /failed its check; the current file is unchanged/);
  assert.equal(readFileSync(target, "utf8"), "two\n");
  assert.deepEqual(readdirSync(join(dir, "sub")).sort(), ["app.cfg", "app.cfg.fmc-prev"], "no temp file is left");
  // a shell killed before the rename leaves the target whole and removes its temp file
  const slow = writeFileCommand({ path: target, content: "four\n", owner: me.user, group: me.group });
  const killed = spawnSync("bash", ["-c", slow.shell.replace('mv -f "$tmp"', 'kill -TERM $$; mv -f "$tmp"')], { input: slow.stdin, encoding: "utf8" });
  assert.notEqual(killed.status, 0);
  assert.equal(readFileSync(target, "utf8"), "two\n");
  assert.deepEqual(readdirSync(join(dir, "sub")).sort(), ["app.cfg", "app.cfg.fmc-prev"]);
});

test("commands quote their arguments and mask secrets", () => {
  const c = cmd("echo", "it's", "a b", { secret: "hunter2", name: "pw" });
  assert.equal(c.shell, `echo 'it'\\''s' 'a b' hunter2`);
  assert.equal(c.display, "echo 'it'\\''s' 'a b' <secret:pw>");
  assert.equal(spawnSync("bash", ["-c", c.shell], { encoding: "utf8" }).stdout, "it's a b hunter2\n");
  assert.equal(quote(""), "''");
});

test("service: enable, start, reload only when needed", () => {
  const f = facts();
  assert.equal(serviceChange(f, { unit: "haproxy.service", enabled: true, running: true }, ctx), undefined);
  const reload = serviceChange(f, { unit: "haproxy.service", enabled: true, running: true, reload: true }, ctx)!;
  assert.equal(reload.title, "reload (configuration changed) haproxy.service");
  // right whatever the unit's state when it runs: reloads a running unit, starts a stopped one
  assert.deepEqual(reload.commands.map((c) => c.display), ["systemctl reload-or-restart haproxy.service"]);
  const start = serviceChange(f, { unit: "keepalived.service", enabled: true, running: true, reload: true }, ctx)!;
  assert.equal(start.title, "enable, start keepalived.service");
  assert.deepEqual(start.commands.map((c) => c.display), ["systemctl enable keepalived.service", "systemctl reload-or-restart keepalived.service"]);
  assert.deepEqual(serviceChange(f, { unit: "keepalived.service", enabled: true, running: true }, ctx)!.commands.map((c) => c.display), ["systemctl enable keepalived.service", "systemctl start keepalived.service"]);
  assert.deepEqual(serviceChange(f, { unit: "haproxy.service", enabled: true, running: true, reload: true, reloadBy: "restart" }, ctx)!.commands.map((c) => c.display), ["systemctl restart haproxy.service"]);
});

test("service: config changed while its package is installed in the same run", () => {
  // facts read before the install: no unit yet; apt's postinst may start it with the package's config
  const f = facts({ units: ["Id=haproxy.service", "ActiveState=inactive", "UnitFileState=", "", "Id=chronyd.service", "ActiveState=inactive", "UnitFileState="], packages: [] });
  assert.deepEqual(f.units.get("haproxy.service"), { active: "inactive", enabled: "not-found" });
  const c = serviceChange(f, { unit: "haproxy.service", enabled: true, running: true, reload: true, installing: true, riskIfTouched: ["reloads HAProxy"] }, ctx)!;
  assert.equal(c.title, "enable, start or reload haproxy.service (installing its package may start it with the package's own config first)");
  assert.deepEqual(c.commands.map((x) => x.display), ["systemctl enable haproxy.service", "systemctl reload-or-restart haproxy.service"]);
  assert.deepEqual(c.notes, [], "it holds no VIP before it is installed");
  // a unit whose running state is not ours (time sync in containers): restarted only if it runs
  const time = serviceChange(f, { unit: "chronyd.service", enabled: true, reload: true, reloadBy: "restart", installing: true }, ctx)!;
  assert.equal(time.title, "enable, restart if running chronyd.service (its package is installed in this run)");
  assert.deepEqual(time.commands.map((x) => x.display), ["systemctl enable chronyd.service", "systemctl try-restart chronyd.service"]);
});

test("sysctl: keys this host cannot set are skipped with a note", () => {
  const changes = sysctlChanges(facts(), "/etc/sysctl.d/90-fmc.conf", { "net.ipv4.ip_forward": "1", "vm.swappiness": "0", "net.bridge.bridge-nf-call-iptables": "1" }, ctx);
  const file = changes.find((c) => c.path)!;
  assert.match(file.diff!, /^\+net\.ipv4\.ip_forward = 1$/m);
  assert.doesNotMatch(file.diff!, /swappiness|bridge/);
  assert.deepEqual(file.notes, ["skipped net.bridge.bridge-nf-call-iptables: not present on this kernel", "skipped vm.swappiness: read-only on this host"]);
  assert.deepEqual(changes[1]!.commands.map((c) => c.display), ["sysctl -q -p /etc/sysctl.d/90-fmc.conf"]);
});

test("LVM: creates what is missing, in order, and refuses a disk with another filesystem", () => {
  const spec = { device: "/dev/vdb", volumeGroup: "data", volumes: [{ name: "shared_lv", size: "20G", filesystem: "ext4" as const }, { name: "longhorn_lv", size: "100%FREE", filesystem: "ext4" as const }] };
  const fresh = lvmChanges(facts(), spec, ctx).flatMap((c) => c.commands.map((x) => x.display));
  assert.deepEqual(fresh.slice(0, 4), ["pvcreate --yes /dev/vdb if blkid -p finds no signature", "vgcreate data /dev/vdb", "lvcreate --yes -n shared_lv -L 20G data", "mkfs.ext4 /dev/data/shared_lv if blkid -p finds no signature"]);
  assert.equal(fresh[4], "lvcreate --yes -n longhorn_lv -l 100%FREE data");
  const done = facts({
    vgs: ["  data 85899345920"],
    lvs: ["  data shared_lv 21474836480", "  data longhorn_lv 64424509440"],
    lsblk: [JSON.stringify({ blockdevices: [{ name: "/dev/vdb", size: 1, type: "disk", fstype: "LVM2_member", children: [{ name: "/dev/mapper/data-shared_lv", size: 1, type: "lvm", fstype: "ext4" }, { name: "/dev/mapper/data-longhorn_lv", size: 1, type: "lvm", fstype: "ext4" }] }] })],
  });
  assert.deepEqual(lvmChanges(done, spec, ctx), []);
  assert.throws(() => lvmChanges(facts(), { ...spec, device: "/dev/vdc" }, ctx), /holds a ext4 filesystem; refusing/);
  assert.throws(() => lvmChanges(facts(), { ...spec, device: "/dev/vdz" }, ctx), /does not exist/);
});

test("mount: a systemd mount unit, daemon-reload, enabled and mounted", () => {
  assert.equal(mountUnit("/mnt/longhorn-disk"), "mnt-longhorn\\x2ddisk.mount");
  const escaped = spawnSync("systemd-escape", ["--path", "--suffix=mount", "/mnt/longhorn-disk"], { encoding: "utf8" }).stdout.trim();
  assert.equal(mountUnit("/mnt/longhorn-disk"), escaped);
  const changes = mountChanges(facts(), { what: "10.17.4.27:/srv/nfs/postgresql", where: "/var/lib/pgsql", type: "nfs4", options: "rw,hard", after: ["network-online.target"] }, ctx);
  assert.equal(changes[0]!.title, "create /etc/systemd/system/var-lib-pgsql.mount");
  assert.match(changes[0]!.diff!, /^\+WantedBy=remote-fs\.target$/m);
  assert.equal(changes[0]!.commands.at(-1)!.display, "systemctl daemon-reload");
  assert.deepEqual(changes[1]!.commands.map((c) => c.display), ["systemctl enable var-lib-pgsql.mount", "systemctl restart var-lib-pgsql.mount"]);
});

test("users, directories and guarded commands", () => {
  const f = facts();
  assert.equal(userChanges(f, { name: "ghost" }, ctx)[0]!.commands[0]!.display, "useradd --create-home --shell /bin/bash ghost");
  assert.deepEqual(userChanges(f, { name: "core" }, ctx), []);
  const keys = userChanges(f, { name: "core", keys: ["ssh-ed25519 AAAA k1", "ssh-ed25519 BBBB k2"] }, ctx);
  assert.equal(keys[0]!.path, "/home/core/.ssh/authorized_keys");
  assert.equal(directoryChange(f, { path: "/srv/data" }, ctx), undefined);
  assert.match(directoryChange(f, { path: "/srv/none", mode: 0o700 }, ctx)!.title, /create directory \/srv\/none \(0700 root:root\)/);
  assert.equal(guardedChange(f, { id: "done-already", title: "x", unless: "true", run: "x" }, ctx), undefined);
  assert.equal(guardedChange(f, { id: "not-yet", title: "init db", unless: "test -f /x", run: "initdb" }, ctx)!.title, "init db");
});

test("plan and apply over a recording transport: phases in order, failures name host and step", async () => {
  const render = contextFor(undefined, "engine");
  const pc = { render, mask: (t: string) => render.secrets.mask(t), loginUser: () => "root" };
  const lb1 = render.topo.host("loadbalancer1");
  // as the phase renders it: for the family the host reports (the facts say Debian)
  const cfg = haproxyConfig(render, lb1, "debian-like");
  const factsFor = (host: string) => (c: { display: string }) =>
    c.display === "read facts"
      ? {
          code: 0,
          stderr: "",
          stdout: factsText({ hostname: [host], addr: host === "loadbalancer1" ? ["eth0 10.17.5.11/24", "eth0 10.17.5.10/24"] : ["eth0 10.17.5.12/24"], files: [`/etc/haproxy/haproxy.cfg 644 root root ${b64(cfg.replace("maxconn 8000", "maxconn 100"))}`] }),
        }
      : undefined;
  const transports = new Map(["loadbalancer1", "loadbalancer2"].map((h) => [h, new RecordingTransport(h, [factsFor(h)])]));
  const p = await plan(pc, PHASES, transports, { concurrency: 4 });
  assert.ok(p.skippedHosts.includes("master1"), "hosts without a transport are skipped, not contacted");
  const phasesInOrder = [...new Set(p.changes.map((c) => c.phase))];
  assert.deepEqual(phasesInOrder, ["base", "loadbalancer"]);
  const reload = p.changes.find((c) => c.host === "loadbalancer1" && c.title.startsWith("reload"))!;
  assert.deepEqual(reload.notes, ["reloads HAProxy on loadbalancer1 while it holds VIP api (10.17.5.10)"]);
  const vrrp = render.secrets.get("k3s-token");
  for (const c of p.changes) {
    assert.ok(!(c.diff ?? "").includes(vrrp), "secrets are masked in diffs");
    for (const x of c.commands) assert.ok(!x.display.includes(vrrp));
  }
  await apply(p, transports, { concurrency: 4 });
  const ran = transports.get("loadbalancer1")!.log.map((c) => c.display);
  assert.ok(ran.indexOf("systemctl reload-or-restart haproxy.service") > ran.findIndex((d) => d.startsWith("write /etc/haproxy/haproxy.cfg")), "reload comes after the checked write");
  assert.ok(ran.some((d) => d === "write /etc/haproxy/haproxy.cfg (0644, checked by haproxy)"));

  // a failing step stops the run after its phase and names host and step
  const failing = new Map(["loadbalancer1", "loadbalancer2"].map((h) => [h, new RecordingTransport(h, [factsFor(h), (c) => (h === "loadbalancer2" && c.display.startsWith("write /etc/resolv.conf") ? { code: 1, stdout: "", stderr: "disk full" } : undefined)])]));
  const p2 = await plan(pc, PHASES, failing, { concurrency: 4 });
  await assert.rejects(apply(p2, failing, { concurrency: 4 }), /apply stopped in phase base:\n\s+loadbalancer2: base: (create|update) \/etc\/resolv\.conf failed \(exit 1\):\ndisk full/);
  assert.ok(!failing.get("loadbalancer1")!.log.some((c) => c.display.startsWith("write /etc/haproxy")), "the loadbalancer phase did not start");
});

test("apply re-reads facts after a package install and runs the re-plan, not the stale plan", async () => {
  const render = contextFor(undefined, "engine");
  const pc = { render, mask: (t: string) => render.secrets.mask(t), loginUser: () => "root" };
  const packaged = "global\n    log /dev/log local0\n# the package's own haproxy.cfg\n";
  // loadbalancer1 is a fresh Debian host; loadbalancer2 has the daemons and an old config
  const installed = new Set<string>();
  const reads = new Map<string, number>();
  const factsOf = (host: string) => {
    const fresh = host === "loadbalancer1" && !installed.has(host);
    return factsText({
      hostname: [host],
      addr: [`eth0 10.17.5.${host === "loadbalancer1" ? 11 : 12}/24`],
      packages: fresh ? [] : ["haproxy install ok installed", "keepalived install ok installed", "curl install ok installed"],
      // what Debian's postinst leaves: HAProxy enabled and started with the package's
      // config; Keepalived enabled but skipped (its config file does not exist yet)
      units: fresh
        ? ["Id=haproxy.service", "ActiveState=inactive", "UnitFileState=", "", "Id=keepalived.service", "ActiveState=inactive", "UnitFileState="]
        : ["Id=haproxy.service", "ActiveState=active", "UnitFileState=enabled", "", "Id=keepalived.service", "ActiveState=inactive", "UnitFileState=enabled"],
      files: fresh ? ["/etc/haproxy/haproxy.cfg -"] : [`/etc/haproxy/haproxy.cfg 644 root root ${b64(packaged)}`],
    });
  };
  const transports = new Map(
    ["loadbalancer1", "loadbalancer2"].map((h) => [
      h,
      new RecordingTransport(h, [
        (c) => {
          if (c.display === "read facts") {
            reads.set(h, (reads.get(h) ?? 0) + 1);
            return { code: 0, stdout: factsOf(h), stderr: "" };
          }
          if (c.display.startsWith("apt-get install")) installed.add(h);
          return undefined;
        },
      ]),
    ]),
  );
  const lbPhase = PHASES.filter((p) => p.name === "loadbalancer");
  const p = await plan(pc, lbPhase, transports, { concurrency: 4 });
  const planned = p.changes.filter((c) => c.host === "loadbalancer1").map((c) => c.title);
  assert.deepEqual(planned, [
    "install haproxy, keepalived, curl",
    "create /etc/haproxy/haproxy.cfg",
    "create /etc/keepalived/fmc-check-proxy",
    "create /etc/systemd/system/keepalived.service.d/fmc.conf",
    "create /etc/keepalived/keepalived.conf",
    "enable, start or reload haproxy.service (installing its package may start it with the package's own config first)",
    "enable, start or reload keepalived.service (installing its package may start it with the package's own config first)",
  ]);
  const executed: string[] = [];
  const result = await apply(p, transports, { concurrency: 4, onEvent: (e) => e.type === "done" && executed.push(`${e.change.host}: ${e.change.title}`) });
  assert.deepEqual(
    executed.filter((t) => t.startsWith("loadbalancer1")),
    [
      "loadbalancer1: install haproxy, keepalived, curl",
      // planned again from the facts read after the install
      "loadbalancer1: update /etc/haproxy/haproxy.cfg",
      "loadbalancer1: create /etc/keepalived/fmc-check-proxy",
      "loadbalancer1: create /etc/systemd/system/keepalived.service.d/fmc.conf",
      "loadbalancer1: create /etc/keepalived/keepalived.conf",
      "loadbalancer1: reload (configuration changed) haproxy.service",
      "loadbalancer1: start keepalived.service",
    ],
  );
  assert.equal(result.changes, executed.length);
  const ran = transports.get("loadbalancer1")!.log.map((c) => c.display);
  assert.equal(ran.filter((d) => d === "read facts").length, 2, "facts read once for the plan and once after the install");
  assert.ok(ran.indexOf("systemctl reload-or-restart haproxy.service") > ran.findIndex((d) => d.startsWith("write /etc/haproxy/haproxy.cfg")));
  assert.ok(!ran.includes("systemctl enable haproxy.service"), "the stale plan's steps did not run: the package enabled HAProxy");
  assert.equal(ran.filter((d) => d.startsWith("apt-get install")).length, 1, "the install is not repeated");
  // loadbalancer2 installed nothing: its facts are read once
  assert.equal(reads.get("loadbalancer2"), 1);
  assert.ok(transports.get("loadbalancer2")!.log.some((c) => c.display === "systemctl reload-or-restart haproxy.service"));
});

test("apply re-reads, before a phase, the hosts an earlier phase changed, and only those", async () => {
  const render = contextFor(undefined, "engine");
  const pc = { render, mask: (t: string) => render.secrets.mask(t), loginUser: () => "root" };
  const reads = new Map<string, number>();
  const transports = new Map(
    ["loadbalancer1", "loadbalancer2"].map((h) => [
      h,
      new RecordingTransport(h, [
        (c) => {
          if (c.display !== "read facts") return undefined;
          reads.set(h, (reads.get(h) ?? 0) + 1);
          // node_exporter installed and running too: base then installs nothing (an install re-reads the facts itself)
          const packages = ["haproxy install ok installed", "keepalived install ok installed", "curl install ok installed", "systemd-timesyncd install ok installed", "prometheus-node-exporter install ok installed"];
          const units = ["Id=prometheus-node-exporter.service", "ActiveState=active", "UnitFileState=enabled"];
          return { code: 0, stdout: factsText({ hostname: [h], addr: [`eth0 10.17.5.${h === "loadbalancer1" ? 11 : 12}/24`], packages, units }), stderr: "" };
        },
      ]),
    ]),
  );
  const p = await plan(pc, PHASES, transports, { concurrency: 4 });
  assert.ok(p.changes.some((c) => c.phase === "base" && c.host === "loadbalancer1"));
  // loadbalancer2's base changes are dropped: nothing changes it before the loadbalancer phase
  const onlyLb1Base = { ...p, changes: p.changes.filter((c) => c.phase !== "base" || c.host === "loadbalancer1") };
  await apply(onlyLb1Base, transports, { concurrency: 4 });
  assert.deepEqual(Object.fromEntries(reads), { loadbalancer1: 2, loadbalancer2: 1 });
  // a plan with nothing to do reads nothing more
  reads.clear();
  assert.deepEqual(await apply({ ...p, changes: [] }, transports, { concurrency: 4 }), { changes: 0 });
  assert.equal(reads.size, 0);
});

test("swap: turned off and commented out of fstab by the real sed; nothing to do once off", (t) => {
  const dir = tempDir(t);
  const fstab = join(dir, "fstab");
  const lines = ["UUID=1 / ext4 defaults 0 1", "/swapfile none swap sw 0 0", "# /old-swap none swap sw 0 0", "UUID=2 /srv xfs defaults 0 2", ""];
  writeFileSync(fstab, lines.join("\n"));
  const change = swapOffChange(facts({ swap: ["/swapfile file 1048572 0 -2"] }), ctx)!;
  assert.equal(change.title, "turn swap off and keep it off");
  // the command's fstab edit, run by the real sed on a copy (swapoff itself needs a host with swap)
  const edit = change.commands[0]!.shell.replace(/^swapoff -a && /, "").replace("/etc/fstab", fstab);
  assert.equal(spawnSync("sh", ["-c", edit]).status, 0);
  assert.deepEqual(readFileSync(fstab, "utf8").split("\n"), ["UUID=1 / ext4 defaults 0 1", "# fmc: /swapfile none swap sw 0 0", "# /old-swap none swap sw 0 0", "UUID=2 /srv xfs defaults 0 2", ""]);
  assert.equal(readFileSync(`${fstab}.fmc-prev`, "utf8"), lines.join("\n"), "the previous fstab is kept");
  assert.equal(swapOffChange(facts({ swap: [] }), ctx), undefined);
});

test("a config written by a run whose reload failed is still reloaded by the next run", async () => {
  const render = contextFor(undefined, "engine");
  const pc = { render, mask: (t: string) => render.secrets.mask(t), loginUser: () => "root" };
  const lb1 = render.topo.host("loadbalancer1");
  // as the phase renders it: for the family the host reports (the facts say Debian)
  const cfg = haproxyConfig(render, lb1, "debian-like");
  // the host as the run leaves it, and what is on disk
  const disk = new Map<string, string>([["/etc/haproxy/haproxy.cfg", cfg.replace("maxconn 8000", "maxconn 100")]]);
  const host = (failReload: boolean) =>
    new RecordingTransport("loadbalancer1", [
      (c) => {
        if (c.display !== "read facts") return undefined;
        const files = [...disk].map(([p, content]) => `${p} 644 root root ${b64(content)}`);
        return { code: 0, stderr: "", stdout: factsText({ hostname: ["loadbalancer1"], addr: ["eth0 10.17.5.11/24"], files }) };
      },
      (c) => {
        if (c.shell.startsWith("mkdir -p /var/lib/fmc/pending")) disk.set(c.shell.match(/touch (\S+)/)![1]!, "");
        else if (c.display.startsWith("write /etc/haproxy/haproxy.cfg")) disk.set("/etc/haproxy/haproxy.cfg", cfg);
        else if (c.display === "systemctl reload-or-restart haproxy.service") {
          if (failReload) return { code: 1, stdout: "", stderr: "Job for haproxy.service failed" };
          disk.delete("/var/lib/fmc/pending/haproxy.service");
        }
        return undefined;
      },
    ]);
  const lbOnly = PHASES.filter((p) => p.name === "loadbalancer");
  const first = new Map([["loadbalancer1", host(true)]]);
  await assert.rejects(apply(await plan(pc, lbOnly, first, { concurrency: 1 }), first, { concurrency: 1 }), /reload-or-restart|reload \(configuration changed\)/);
  assert.equal(disk.get("/etc/haproxy/haproxy.cfg"), cfg, "the new config is on disk");
  assert.ok(disk.has("/var/lib/fmc/pending/haproxy.service"), "and marked as not live yet");
  // the file matches now, yet the next plan reloads
  const second = new Map([["loadbalancer1", host(false)]]);
  const p2 = await plan(pc, lbOnly, second, { concurrency: 1 });
  const haproxyOnly = (p: { changes: readonly { title: string }[] }) => p.changes.map((c) => c.title).filter((x) => x.includes("haproxy"));
  assert.deepEqual(haproxyOnly(p2), ["reload (configuration changed in an earlier run that did not finish) haproxy.service"]);
  await apply(p2, second, { concurrency: 1 });
  assert.equal(disk.has("/var/lib/fmc/pending/haproxy.service"), false, "a successful reload clears the mark");
  assert.deepEqual(haproxyOnly(await plan(pc, lbOnly, second, { concurrency: 1 })), []);
});

test("a host whose facts can't be read is reported; the others are still planned", async () => {
  const render = contextFor(undefined, "engine");
  const pc = { render, mask: (t: string) => render.secrets.mask(t), loginUser: () => "root" };
  const ok = new RecordingTransport("loadbalancer1", [(c) => (c.display === "read facts" ? { code: 0, stderr: "", stdout: factsText({ hostname: ["loadbalancer1"] }) } : undefined)]);
  const broken = new RecordingTransport("loadbalancer2", [(c) => (c.display === "read facts" ? { code: 1, stderr: "sudo: a password is required", stdout: "" } : undefined)]);
  const p = await plan(pc, PHASES, new Map<string, RecordingTransport>([["loadbalancer1", ok], ["loadbalancer2", broken]]), { concurrency: 2 });
  assert.deepEqual([...p.failedHosts.keys()], ["loadbalancer2"]);
  assert.match(p.failedHosts.get("loadbalancer2")!, /loadbalancer2: reading facts failed: sudo: a password is required/);
  assert.ok(p.changes.some((c) => c.host === "loadbalancer1"));
  assert.ok(!p.changes.some((c) => c.host === "loadbalancer2"));
});
