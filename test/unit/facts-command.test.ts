// fmc facts HOST [NAME]: the request is the engine's (the union of what every phase that
// touches the host reads, peers included), NAME narrows it to one kind, a bad NAME or HOST is
// a usage error before any host is reached, --json is one object with maps as objects, and a
// file's secrets never reach the output: a file only some may read shows no content at all,
// a readable one its first lines masked.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { contextFor, fmc, tempDir } from "../helpers.js";
import { ShellTransport } from "../shell-transport.js";
import { FACT_NAMES, FACT_SOURCES } from "../../src/hosts/facts.js";
import { RecordingTransport, type Transport } from "../../src/hosts/transport.js";
import { plan } from "../../src/engine/run.js";
import type { SessionOptions } from "../../src/engine/session.js";
import { PHASES, type PhaseContext } from "../../src/phases/index.js";
import { factsOutput, hostRequest, type FactsArgs, type FactsSession } from "../../src/cli/facts-commands.js";
import { FmcError } from "../../src/errors.js";

const ctx = contextFor();
const pc: PhaseContext = { render: ctx, mask: (t) => ctx.secrets.mask(t), loginUser: () => "root" };
const TOKEN = ctx.secrets.get("k3s-token");
const PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\n-----END OPENSSH PRIVATE KEY-----\n";

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** loadbalancer1's answer to the fact script: a config that names a known secret and an unknown one, a 0600 file, a key. */
const ANSWER = [
  "@os",
  "ID=debian",
  "VERSION_ID=12",
  "@hostname",
  "loadbalancer1",
  "@addr",
  "eth0 10.17.5.11/24",
  "eth0 10.17.5.10/32",
  "@swap",
  "@units",
  "Id=haproxy.service",
  "ActiveState=active",
  "UnitFileState=enabled",
  "",
  "@packages",
  "haproxy install ok installed",
  "keepalived deinstall ok config-files",
  "@sysctl",
  "net.ipv4.ip_nonlocal_bind=1",
  "@files",
  `/etc/haproxy/haproxy.cfg 644 root root ${b64(`global\n  # cluster token ${TOKEN}\n  password: hunter2-not-in-the-store\nfrontend api\n  bind :6443\nbackend k3s\n  server master1 10.17.4.21:6443\n`)}`,
  `/etc/keepalived/keepalived.conf 600 root root ${b64(`vrrp_instance api {\n  auth_pass s3cr3tPw\n  # ${TOKEN}\n}\n`)}`,
  `/etc/keepalived/fmc-check-proxy 755 root root ${b64(`#!/bin/sh\n${PEM}`)}`,
  "/etc/hostname 644 root root " + b64("loadbalancer1\n"),
  "/etc/sysctl.d/90-fmc.conf -",
  "@dirs",
  "@users",
  "root:x:0:0:root:/root:/bin/bash",
  "@guard",
  "selinux-haproxy-connect-any 0",
  "@guard",
  "selinux-keepalived-connect-any 1",
  "@end",
  "",
].join("\n");

/** Secrets in ANSWER that must never be printed. */
const NEVER = [TOKEN, "hunter2-not-in-the-store", "s3cr3tPw", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB"];

const lb = () => new RecordingTransport("loadbalancer1", [(c) => (c.display === "read facts" ? { code: 0, stdout: ANSWER, stderr: "" } : undefined)]);

/** openSession as the command sees it: the hosts it asked for, connected when `transports` has them. */
function opener(transports: Record<string, Transport>, asked: string[][]) {
  return async (o: SessionOptions): Promise<FactsSession> => {
    const wanted = o.hosts!(pc).map((h) => h.name);
    asked.push(wanted);
    const inventory = { source: "spec" as const, targets: new Map(wanted.map((n) => [n, { name: n, address: "10.17.5.11", port: 22, user: "root" }])), knownHostsFile: "/dev/null" };
    return { pc, phases: PHASES, transports: new Map(wanted.flatMap((n) => (transports[n] ? [[n, transports[n]] as const] : []))), inventory, close: () => undefined };
  };
}

const run = (args: FactsArgs, t: Record<string, Transport> = {}, asked: string[][] = []) => factsOutput(args, opener(t, asked));

test("the request for a host is the engine's: the union of its phases' (a load balancer reads HAProxy's config and unit)", async () => {
  const { request, readFor } = hostRequest(pc, PHASES, "loadbalancer1");
  assert.ok(request.files.has("/etc/haproxy/haproxy.cfg"), [...request.files].join(", "));
  assert.ok(request.files.has("/etc/keepalived/keepalived.conf"));
  assert.ok(request.units.has("haproxy.service") && request.units.has("keepalived.service"));
  assert.ok(request.packages.has("haproxy"));
  assert.ok(request.files.has("/etc/hostname"), "base's facts too");
  assert.deepEqual(readFor, ["base", "loadbalancer"]);
  // the same request as plan builds, hosts read as a phase's peers included
  const hosts = ["loadbalancer1", "master1", "worker1", "storage1", "postgresql1"];
  const p = await plan(pc, PHASES, new Map(hosts.map((h) => [h, new RecordingTransport(h)])), { concurrency: 1 });
  for (const h of hosts) assert.deepEqual(hostRequest(pc, PHASES, h).request, p.requests.get(h), h);
  assert.ok(hostRequest(pc, PHASES, "worker1").readFor.includes("k3s-servers (as a peer)"));
  // and that is what the command sends: one script, only the host asked for connected
  const t = lb();
  const asked: string[][] = [];
  const out = await run({ host: "loadbalancer1" }, { loadbalancer1: t }, asked);
  assert.deepEqual(asked, [["loadbalancer1"]]);
  assert.deepEqual(t.log.map((c) => c.display), ["read facts"]);
  assert.match(t.log[0]!.shell, /'\/etc\/haproxy\/haproxy\.cfg'/);
  assert.match(t.log[0]!.shell, /systemctl show .*'haproxy\.service'/);
  assert.match(out, /^loadbalancer1 \(10\.17\.5\.11, spec inventory\): facts read for base, loadbalancer$/m);
  for (const name of FACT_NAMES) assert.match(out, new RegExp(`^${name}( \\(\\d+\\))?$`, "m"), `section ${name}`);
  assert.match(out, /^ {2}\/etc\/haproxy\/haproxy\.cfg {2}0644 root:root {2}\d+ B, 7 lines {2}sha256:[0-9a-f]{64}$/m);
  assert.match(out, /^ {2}haproxy\.service +active, enabled$/m);
  assert.match(out, /^ {2}keepalived +not installed$/m);
  assert.match(out, /^ {2}\/etc\/sysctl\.d\/90-fmc\.conf {2}absent$/m);
  assert.match(out, /^ {2}selinux-keepalived-connect-any +exit 1$/m);
  assert.match(out, /^mounts\n {2}not read: no phase that touches this host reads mounts from loadbalancer1$/m);
});

test("NAME narrows the output, and the request, to one kind of fact", async () => {
  const t = lb();
  const out = await run({ host: "loadbalancer1", name: "units" }, { loadbalancer1: t });
  assert.match(out, /^units \(\d+\)$/m);
  assert.match(out, /haproxy\.service +active, enabled/);
  for (const other of FACT_NAMES.filter((n) => n !== "units")) assert.doesNotMatch(out, new RegExp(`^${other}\\b`, "m"), other);
  assert.doesNotMatch(out, /haproxy\.cfg/);
  // only the units were asked for: no file read, no guard run
  assert.match(t.log[0]!.shell, /systemctl show/);
  assert.doesNotMatch(t.log[0]!.shell, /haproxy\.cfg|getsebool/);
  const json = JSON.parse(await run({ host: "loadbalancer1", name: "files", json: true }, { loadbalancer1: lb() })) as Record<string, unknown>;
  assert.deepEqual(Object.keys(json), ["files"]);
});

test("a bad NAME or an unknown HOST is a usage error naming the valid ones; no host is reached", async () => {
  const asked: string[][] = [];
  await assert.rejects(run({ host: "loadbalancer1", name: "file" }, { loadbalancer1: lb() }, asked), (e: FmcError) => {
    assert.ok(e instanceof FmcError && e.code === "USAGE", String(e));
    assert.match(e.message, /^file: no such fact$/);
    assert.match(e.hint ?? "", /did you mean "files"\?/);
    assert.ok(e.hint?.endsWith(`facts: ${FACT_NAMES.join(", ")}`), e.hint);
    return true;
  });
  await assert.rejects(run({ host: "loadbalancer1", name: "swap" }), (e: FmcError) => e.code === "USAGE" && /^did you mean "swapActive"\?/.test(e.hint ?? ""));
  assert.deepEqual(asked, [], "NAME is checked before a session opens");
  const t = lb();
  await assert.rejects(run({ host: "loadbalancer9" }, { loadbalancer1: t }, asked), (e: FmcError) => {
    assert.ok(e instanceof FmcError && e.code === "USAGE", String(e));
    assert.match(e.message, /^loadbalancer9: no such host in the spec$/);
    assert.match(e.hint ?? "", /did you mean "loadbalancer1"\?.*hosts: .*master1, .*storage1/);
    return true;
  });
  assert.deepEqual(asked, [[]], "no host was connected");
  assert.equal(t.log.length, 0);
  // the facts' one list names every key of HostFacts (FACT_SOURCES is checked against it when compiled)
  assert.deepEqual([...FACT_NAMES], Object.keys(FACT_SOURCES));
  assert.equal(FACT_NAMES.length, 14);
});

test("--json is one object keyed by kind, maps as objects, null for what is not read", async () => {
  const json = JSON.parse(await run({ host: "loadbalancer1", json: true }, { loadbalancer1: lb() })) as Record<string, any>;
  assert.deepEqual(Object.keys(json), [...FACT_NAMES]);
  assert.deepEqual(json.os, { id: "debian", versionId: "12", family: "debian-like" });
  assert.equal(json.hostname, "loadbalancer1");
  assert.deepEqual(json.addresses, { eth0: ["10.17.5.11/24", "10.17.5.10/32"] });
  assert.equal(json.swapActive, false);
  assert.deepEqual(json.units["haproxy.service"], { active: "active", enabled: "enabled" });
  assert.equal(json.units["keepalived.service"], null, "asked, not answered");
  assert.equal(json.packages.haproxy, true);
  assert.equal(json.packages.keepalived, false);
  assert.deepEqual(json.sysctl["net.ipv4.ip_nonlocal_bind"], { value: "1", writable: true });
  assert.equal(json.files["/etc/sysctl.d/90-fmc.conf"], null);
  const cfg = json.files["/etc/haproxy/haproxy.cfg"];
  assert.equal(cfg.mode, "0644");
  assert.equal(cfg.lines, 7);
  assert.match(cfg.sha256, /^[0-9a-f]{64}$/);
  assert.equal(cfg.head.length, 5);
  assert.deepEqual(json.users.root, { uid: 0, home: "/root", shell: "/bin/bash" });
  assert.deepEqual(json.guards["selinux-keepalived-connect-any"].exit, 1);
  assert.match(json.guards["selinux-keepalived-connect-any"].test, /getsebool keepalived_connect_any/);
  for (const storage of ["mounts", "blockDevices", "lvm", "dirs"]) assert.equal(json[storage], null, storage);
});

test("a file's secrets are never printed: no content of a file only some may read, a readable one masked", async () => {
  for (const json of [false, true]) {
    const out = await run({ host: "loadbalancer1", json }, { loadbalancer1: lb() });
    for (const secret of NEVER) assert.ok(!out.includes(secret), `${json ? "--json" : "text"} printed ${secret.slice(0, 12)}…`);
    assert.match(out, /<secret:k3s-token>/, "a known secret in a readable file is named by its mask");
    assert.match(out, /password: <masked>/);
    assert.doesNotMatch(out, /vrrp_instance/, "nothing of a 0600 file");
    assert.doesNotMatch(out, /BEGIN OPENSSH PRIVATE KEY/);
  }
  const text = await run({ host: "loadbalancer1", name: "files" }, { loadbalancer1: lb() });
  assert.match(text, /keepalived\.conf {2}0600 root:root .*\n {4}content not shown: not readable by everyone on the host/);
  assert.match(text, /fmc-check-proxy {2}0755 root:root .*\n {4}content not shown: holds a private key/);
  assert.match(text, /^ {4}│ frontend api$/m, "a readable file's first lines");
  assert.match(text, /^ {4}│ … 2 more$/m);
});

test("the fact script itself, run by this machine's bash, is read and printed in every kind", async (t) => {
  const root = tempDir(t);
  const host = new ShellTransport("loadbalancer1", root);
  const out = await run({ host: "loadbalancer1" }, { loadbalancer1: host });
  for (const name of FACT_NAMES) assert.match(out, new RegExp(`^${name}\\b`, "m"), name);
  const json = JSON.parse(await run({ host: "loadbalancer1", json: true }, { loadbalancer1: new ShellTransport("loadbalancer1", root) })) as Record<string, unknown>;
  assert.equal(typeof json.hostname, "string");
  assert.ok(json.files && typeof json.files === "object" && "/etc/haproxy/haproxy.cfg" in json.files);
});

test("fmc facts on the command line: registered, usage errors with codes, an unreachable host's SSH_CONNECT", (t) => {
  const dir = tempDir(t);
  const help = fmc(["facts", "--help"], dir);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^USAGE fmc facts /m);
  assert.match(help.stdout.replace(/\s+/g, " "), /e\.g\. fmc facts loadbalancer1 files/);
  const name = fmc(["facts", "loadbalancer1", "bogus"], dir);
  assert.equal(name.status, 1);
  assert.match(name.stderr, /^error\[USAGE\] bogus: no such fact\n\s+hint: facts: os, hostname, /);
  const host = fmc(["facts", "nosuchhost"], dir);
  assert.equal(host.status, 1);
  assert.match(host.stderr, /^error\[USAGE\] nosuchhost: no such host in the spec\n\s+hint: hosts: master1, master2, /);
  assert.equal(host.stdout + name.stdout, "");
  // the lab's inventory is read as plan reads it: there, loadbalancer1 is a closed port
  mkdirSync(join(dir, ".fmc", "lab"), { recursive: true, mode: 0o700 });
  writeFileSync(
    join(dir, ".fmc", "lab", "inventory.json"),
    JSON.stringify({ lab: "test", hosts: [{ name: "loadbalancer1", address: "127.0.0.1", port: 1, user: "root" }], knownHosts: join(dir, ".fmc", "lab", "known_hosts") }),
  );
  const down = fmc(["facts", "loadbalancer1", "--timeout", "5"], dir);
  assert.equal(down.status, 1);
  assert.match(down.stderr, /^error\[SSH_CONNECT\] .*127\.0\.0\.1/m);
  assert.match(down.stderr, /hint: is the lab up\? fmc lab status/);
  // a spec host the lab was brought up without
  const absent = fmc(["facts", "master1"], dir);
  assert.equal(absent.status, 1);
  assert.match(absent.stderr, /^error\[UNREACHABLE\] master1 is not in the lab inventory/);
});
