// The VIP holders on AlmaLinux/RHEL 9 (issue 20), planned from recorded facts and checked
// against the upstream files in test/fixtures/rhel9-vip (SOURCES.json says where each
// comes from): Keepalived's check script lies where RHEL's SELinux policy lets keepalived
// run it and keepalived.conf names it there, keepalived_connect_any is set exactly when
// getsebool says it is off, and HAProxy's admin socket lies in a directory the OS's
// haproxy package provides (haproxy -c never binds it, so only a start would tell). The
// guards' shell tests run against stand-ins of selinuxenabled and getsebool that answer as
// libselinux's do. Debian's layout stays as the lab runs it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseFacts, type FactRequest, type HostFacts } from "../../src/hosts/facts.js";
import type { Change } from "../../src/ops/change.js";
import { edge } from "../../src/phases/edge.js";
import { loadbalancer } from "../../src/phases/loadbalancer.js";
import type { Phase, PhaseContext } from "../../src/phases/phase.js";
import { certBundle, EDGE_PATHS } from "../../src/render/edge.js";
import type { ClusterContext } from "../../src/state/context.js";
import { SEED_YAML } from "../../src/model/seed.js";
import type { Host } from "../../src/model/schema.js";
import { contextFor, requireTool, ROOT, tempDir } from "../helpers.js";

type Family = "debian-like" | "rhel-like";
/** SELinux as the host shows it: enforcing with the boolean off or on, disabled, or not installed (Debian). */
type Selinux = "off" | "on" | "disabled" | "absent";

const FIXTURES = join(ROOT, "test/fixtures/rhel9-vip");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const b64 = (s: string) => Buffer.from(s).toString("base64");
const bash = spawnSync("sh", ["-c", "command -v bash"], { encoding: "utf8" }).stdout.trim();
const grep = spawnSync("sh", ["-c", "command -v grep"], { encoding: "utf8" }).stdout.trim();

/** The boolean the policy declares for keepalived_t's connections, and its default. */
function keepalivedTunable(): { name: string; byDefault: string } {
  const m = /gen_tunable\((keepalived_\w+), (\w+)\)/.exec(fixture("keepalived.te"));
  assert.ok(m, "keepalived.te declares a tunable");
  return { name: m[1]!, byDefault: m[2]! };
}

/** An SELinux file-context line's path regex for `type`, anchored as matchpathcon anchors it. */
function contextRegex(fc: string, type: string): RegExp {
  const line = fc.split("\n").find((l) => l.includes(`:${type},`));
  assert.ok(line, `a file context for ${type}`);
  return new RegExp(`^${line.split(/\s+/)[0]!}$`);
}

/**
 * The guards' shell tests as the fact script runs them, on a PATH of stand-ins:
 * selinuxenabled and getsebool (libselinux's output, SOURCES.json), and grep.
 */
function guardLines(request: Partial<FactRequest>, se: Selinux, dir: string): string[] {
  const bin = join(dir, `bin-${se}`);
  if (!existsSync(bin)) {
    mkdirSync(bin);
    symlinkSync(grep, join(bin, "grep"));
  }
  if (se !== "absent") {
    writeFileSync(join(bin, "selinuxenabled"), `#!${bash}\nexit ${se === "disabled" ? 1 : 0}\n`, { mode: 0o755 });
    const answer = se === "disabled" ? 'echo "getsebool:  SELinux is disabled" >&2; exit 1' : `echo "$1 --> ${se}"`;
    writeFileSync(join(bin, "getsebool"), `#!${bash}\n${answer}\n`, { mode: 0o755 });
  }
  return [...(request.guards ?? new Map())].map(([id, shell]) => `${id} ${spawnSync(bash, ["-c", shell], { env: { PATH: bin } }).status}`);
}

/** Facts of a holder of `family` that has what `done` put there (or nothing yet). */
function factsOf(host: Host, family: Family, guards: string[], done: readonly Change[] = []): HostFacts {
  const files = done.filter((c) => c.file).map((c) => `${c.file!.path} ${(c.file!.mode ?? 0o644).toString(8)} root root ${b64(c.file!.content)}`);
  const installed = done.length > 0;
  const sections: Record<string, string[]> = {
    os: family === "debian-like" ? ["ID=debian", 'VERSION_ID="12"'] : ["ID=almalinux", 'ID_LIKE="rhel centos fedora"', 'VERSION_ID="9.4"'],
    hostname: [host.name],
    addr: [`eth0 ${host.address}/24`],
    // a unit runs once a change started it
    units: ["haproxy.service", "keepalived.service", "traefik.service"].flatMap((u) => {
      const on = done.some((c) => c.title.includes(u) && /start/.test(c.title));
      return [`Id=${u}`, `ActiveState=${on ? "active" : "inactive"}`, `UnitFileState=${on ? "enabled" : ""}`, ""];
    }),
    packages: installed ? ["haproxy", "keepalived", "curl"].map((p) => `${p} install ok installed`) : [],
    files,
    guard: guards,
  };
  return parseFacts(host.name, Object.entries(sections).map(([k, v]) => [`@${k}`, ...v].join("\n")).join("\n") + "\n@end\n");
}

/** A self-signed origin certificate (the edge phase refuses to plan without one). */
function originCert(dir: string): { cert: string; key: string } {
  requireTool("openssl");
  const r = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=app.example.com", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key: readFileSync(join(dir, "key.pem"), "utf8") };
}

interface Holder {
  readonly what: string;
  readonly phase: Phase;
  readonly pc: PhaseContext;
  readonly host: Host;
}

/** The load balancers, the edge with HAProxy and the edge with Traefik: every VIP holder the phases plan. */
function holders(dir: string): Holder[] {
  const oc = originCert(dir);
  const bin = join(dir, "traefik");
  writeFileSync(bin, "#!/bin/sh\n");
  const sha = createHash("sha256").update(readFileSync(bin)).digest("hex");
  const pcFor = (ctx: ClusterContext): PhaseContext => ({ render: ctx, mask: (x) => ctx.secrets.mask(x), loginUser: () => "root", originCertificate: oc });
  const lb = contextFor();
  const haproxyEdge = contextFor(`${SEED_YAML}\nedge:\n  engine: haproxy\n`);
  const traefikEdge = contextFor(`${SEED_YAML}\nedge:\n  traefikBinary:\n    path: ${bin}\n    sha256: "${sha}"\n`);
  return [
    { what: "loadbalancer", phase: loadbalancer, pc: pcFor(lb), host: lb.topo.host("loadbalancer1") },
    { what: "edge (haproxy)", phase: edge, pc: pcFor(haproxyEdge), host: haproxyEdge.topo.host("traefik1") },
    { what: "edge (traefik)", phase: edge, pc: pcFor(traefikEdge), host: traefikEdge.topo.host("traefik2") },
  ];
}

function plan(h: Holder, family: Family, se: Selinux, dir: string, done: readonly Change[] = []): Change[] {
  return h.phase.plan(h.pc, h.host, factsOf(h.host, family, guardLines(h.phase.facts(h.pc, h.host), se, dir), done));
}

/** The planned Keepalived check script: the file keepalived.conf's vrrp_script runs, found by its content. */
const checkScriptChange = (changes: readonly Change[]) => changes.find((c) => c.file?.content.includes("# Keepalived's check of the local proxy"));
const fileNamed = (changes: readonly Change[], name: string) => changes.find((c) => c.file && c.file.path.endsWith(`/${name}`));
/** The scripts keepalived.conf runs. */
const scriptsIn = (conf: string) => [...new Set([...conf.matchAll(/^\s+script "(\S+) /gm)].map((m) => m[1]!))];

test("keepalived_connect_any: set on rhel-like VIP holders while getsebool says off; not when on, SELinux disabled or absent; never on Debian", (t) => {
  const dir = tempDir(t);
  const tunable = keepalivedTunable();
  // why it must be set: the policy leaves it off
  assert.equal(tunable.byDefault, "false");
  const sets = (c: Change) => c.commands.some((x) => new RegExp(`\\bsetsebool -P ${tunable.name} (1|on)\\b`).test(x.shell));
  for (const h of holders(dir)) {
    const off = plan(h, "rhel-like", "off", dir);
    const step = off.filter(sets);
    assert.equal(step.length, 1, `${h.what}: one step sets ${tunable.name}: ${off.map((c) => c.title)}`);
    // before Keepalived is started with a check that needs it
    const at = off.indexOf(step[0]!);
    const ka = off.findIndex((c) => c.title.includes("keepalived.service"));
    assert.ok(ka > at, `${h.what}: the boolean comes before keepalived.service`);
    assert.ok(off.indexOf(fileNamed(off, "keepalived.conf")!) > at, `${h.what}: and before keepalived.conf`);
    for (const se of ["on", "disabled", "absent"] as const) assert.ok(!plan(h, "rhel-like", se, dir).some(sets), `${h.what}: nothing to set when SELinux is ${se}`);
    for (const se of ["off", "absent"] as const) assert.ok(!plan(h, "debian-like", se, dir).some(sets), `${h.what}: never on Debian (${se})`);
    // once the host has everything and getsebool says on, nothing of Keepalived's is planned
    // again (Traefik's own install and units are edge.test's business)
    const again = plan(h, "rhel-like", "on", dir, off);
    assert.deepEqual(again.filter((c) => sets(c) || /keepalived/.test(c.title)).map((c) => c.title), [], `${h.what}: re-plan`);
    if (h.what !== "edge (traefik)") assert.deepEqual(again.map((c) => c.title), [], `${h.what}: re-plan`);
  }
});

test("the check script lands where RHEL's policy labels keepalived_unconfined_script_exec_t, keepalived.conf names it there, keepalived --config-test accepts it", (t) => {
  requireTool("keepalived");
  const dir = tempDir(t);
  const unconfined = contextRegex(fixture("keepalived.fc"), "keepalived_unconfined_script_exec_t");
  // the package makes that directory, so rpm labels it from the file contexts
  assert.match(fixture("keepalived.spec"), /^%dir %\{_libexecdir\}\/keepalived\/$/m);
  for (const h of holders(dir)) {
    const rhel = plan(h, "rhel-like", "off", dir);
    const check = checkScriptChange(rhel);
    assert.ok(check, `${h.what}: the check script is planned`);
    const path = check.file!.path;
    assert.match(path, unconfined, `${h.what}: ${path} is labelled keepalived_unconfined_script_exec_t`);
    assert.equal(check.file!.mode, 0o755);
    // relabelled after the write, where the directory did not give it the label
    assert.ok(check.commands.some((c) => c.shell.includes(`restorecon -F ${path}`)), `${h.what}: relabelled`);
    const conf = fileNamed(rhel, "keepalived.conf")!.file!.content;
    assert.deepEqual(scriptsIn(conf), [path], `${h.what}: keepalived.conf runs the script where it is written`);
    assert.ok(h.phase.facts(h.pc, h.host).files!.has(path), `${h.what}: ${path} is read as a fact, so a re-plan sees it`);
    // Debian keeps the lab's path
    const deb = plan(h, "debian-like", "absent", dir);
    const debPath = checkScriptChange(deb)!.file!.path;
    assert.equal(debPath, "/etc/keepalived/fmc-check-proxy");
    assert.doesNotMatch(debPath, unconfined);
    assert.deepEqual(scriptsIn(fileNamed(deb, "keepalived.conf")!.file!.content), [debPath]);
    assert.ok(!checkScriptChange(deb)!.commands.some((c) => c.shell.includes("restorecon")), "no relabel on Debian");
    // the daemon's own parser accepts the rhel config, the script where this machine may hold it
    const here = join(dir, `check-${h.host.name}`);
    writeFileSync(here, check.file!.content, { mode: 0o755 });
    writeFileSync(join(dir, "keepalived.conf"), conf.replaceAll(path, here));
    const r = spawnSync("keepalived", ["--config-test", "-f", join(dir, "keepalived.conf")], { encoding: "utf8" });
    assert.equal(r.status, 0, `${h.what}: ${r.stderr}`);
  }
});

/** Directories a unit makes before its daemon starts (RuntimeDirectory=, StateDirectory=). */
function unitDirs(unit: string): string[] {
  const dirs = (key: string, base: string) => [...unit.matchAll(new RegExp(`^${key}=(.+)$`, "gm"))].flatMap((m) => m[1]!.trim().split(/\s+/).map((d) => `${base}/${d}`));
  return [...dirs("RuntimeDirectory", "/run"), ...dirs("StateDirectory", "/var/lib")];
}

/** Directories an RPM spec's %files makes (%dir), its %define and the standard macros expanded. */
function specDirs(spec: string): string[] {
  const macros: Record<string, string> = { _localstatedir: "/var", _sysconfdir: "/etc", _datadir: "/usr/share", _libexecdir: "/usr/libexec" };
  for (const m of spec.matchAll(/^%define (\w+) (\S+)$/gm)) macros[m[1]!] = m[2]!;
  const expand = (s: string): string => (/%\{\w+\}/.test(s) ? expand(s.replace(/%\{(\w+)\}/g, (_, k: string) => macros[k] ?? `?${k}`)) : s);
  return [...spec.matchAll(/^%dir (\S+)$/gm)].map((m) => expand(m[1]!).replace(/\/$/, ""));
}

/** tmpfiles.d `d` lines: directories systemd-tmpfiles makes at boot. */
const tmpfilesDirs = (conf: string) => [...conf.matchAll(/^d\s+(\S+)/gm)].map((m) => m[1]!);

const socketIn = (cfg: string) => /^\s+stats socket (\S+)/m.exec(cfg)?.[1];

test("HAProxy's admin socket lies in a directory the OS's haproxy package provides; haproxy -c accepts the rhel config", (t) => {
  requireTool("haproxy");
  const dir = tempDir(t);
  const rhelUnit = fixture("haproxy.service");
  // RHEL 9's unit makes no directory: only the package's own are there when HAProxy starts
  assert.deepEqual(unitDirs(rhelUnit), []);
  const rhelDirs = [...unitDirs(rhelUnit), ...specDirs(fixture("haproxy.spec"))];
  const debianDirs = [...unitDirs(fixture("debian12-haproxy.service")), ...tmpfilesDirs(fixture("debian12-haproxy.tmpfiles.conf"))];
  const sockets = contextRegex(fixture("rhcs.fc"), "haproxy_var_lib_t");
  const oc = originCert(dir);
  for (const h of holders(dir).filter((x) => x.what !== "edge (traefik)")) {
    const rhel = fileNamed(plan(h, "rhel-like", "off", dir), "haproxy.cfg")!.file!.content;
    const socket = socketIn(rhel);
    assert.ok(socket, `${h.what}: an admin socket`);
    assert.ok(rhelDirs.includes(dirname(socket)), `${h.what}: ${socket} is in a directory RHEL's package makes (${rhelDirs.join(", ")})`);
    // where SELinux lets haproxy_t create it, as the package's own config does
    assert.match(dirname(socket), sockets);
    assert.equal(dirname(socketIn(fixture("haproxy.cfg"))!), dirname(socket));
    const deb = fileNamed(plan(h, "debian-like", "absent", dir), "haproxy.cfg")!.file!.content;
    assert.equal(socketIn(deb), "/run/haproxy/admin.sock", `${h.what}: Debian's socket is unchanged`);
    assert.ok(debianDirs.includes(dirname(socketIn(deb)!)), `${h.what}: in a directory Debian's package makes`);
    // the two configs differ in the socket only
    assert.equal(rhel.replace(socket, "/run/haproxy/admin.sock"), deb);
    // haproxy's own check, the edge's files where this machine may hold them
    writeFileSync(join(dir, "origin.pem"), certBundle(oc.cert, oc.key), { mode: 0o600 });
    writeFileSync(join(dir, "forwarders.acl"), "");
    const cfg = join(dir, "haproxy.cfg");
    writeFileSync(cfg, rhel.replace(EDGE_PATHS.bundle, join(dir, "origin.pem")).replace(EDGE_PATHS.forwarders, join(dir, "forwarders.acl")));
    const r = spawnSync("haproxy", ["-c", "-f", cfg], { encoding: "utf8" });
    assert.equal(r.status, 0, `${h.what}: ${r.stdout}${r.stderr}`);
  }
});
