// The internal DNS: serials that only go up, zones and bind9 config checked by BIND's own
// tools (and served by a real named in a throwaway network namespace), each PTR once, the
// FreeIPA scripts run against stubs (no password in any argv, records idempotent, failures
// reported at the end), and the dns phase planning nothing on a second run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SEED_YAML } from "../../src/model/seed.js";
import {
  BIND_LAYOUTS, dateSerial, dnsRecords, etcHosts, forwardZone, ipaClientInstall, ipaRecords, ipaServerInstall, nextSerial, ptrRecords,
  renderDns, reverseZone, reverseZoneName, serialOf, zoneFor, zones,
} from "../../src/render/dns.js";
import { dnsPhase, IPA_INSTALLED_GUARD, IPA_RECORDS_GUARD, withBootstrapResolver } from "../../src/phases/dns.js";
import { script } from "../../src/hosts/command.js";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { cloudInit } from "../../src/render/terraform.js";
import type { ClusterContext } from "../../src/state/context.js";
import type { Change } from "../../src/ops/change.js";
import { Topology } from "../../src/model/topology.js";
import { contextFor, inNetns, requireTool, tempDir } from "../helpers.js";

const BIND9 = `${SEED_YAML}\ndns: { engine: bind9 }\n`;
const ctx = contextFor(BIND9, "dns");
const ipaCtx = contextFor(SEED_YAML, "dns");
const day = (iso: string) => new Date(`${iso}T12:00:00Z`);

type Mutable = { -readonly [K in keyof typeof ctx.spec]: (typeof ctx.spec)[K] };
/** The bind9 context with a spec edit that skips validation (renderers must cope anyway). */
function edited(edit: (s: Mutable) => void): ClusterContext {
  const spec = structuredClone(ctx.spec) as Mutable;
  edit(spec);
  return { ...ctx, spec, topo: new Topology(spec, ctx.topo.sshKeys) };
}

function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return spawnSync(cmd, args, { encoding: "utf8", input: opts.input, env: opts.env ?? process.env, cwd: opts.cwd });
}

/** Parsed resource records of a zone file: [owner, type, value]. */
function records(zone: string): Array<[string, string, string]> {
  return zone
    .split("\n")
    .filter((l) => l && !l.startsWith(";") && !l.startsWith("$") && !l.startsWith("@"))
    .map((l) => l.split(/\s+IN\s+/))
    .map(([owner, rest]) => [owner!.trim(), ...(rest!.trim().split(/\s+/) as [string, string])]);
}

// ---------------------------------------------------------------------------------------
// serials

test("serials: YYYYMMDD00 in UTC; unchanged keeps, changed grows, also across days and when ahead", () => {
  assert.equal(dateSerial(new Date("2025-03-07T23:59:59Z")), 2025030700);
  assert.equal(dateSerial(new Date("2025-03-08T00:00:00Z")), 2025030800);
  assert.equal(nextSerial(2025030704, false, day("2025-03-09")), 2025030704, "same records, same serial");
  assert.equal(nextSerial(undefined, true, day("2025-03-07")), 2025030700);
  assert.equal(nextSerial(2025030700, true, day("2025-03-07")), 2025030701, "second change of the day");
  assert.equal(nextSerial(2025030799, true, day("2025-03-07")), 2025030800, "still greater after 99 changes");
  assert.equal(nextSerial(2025030705, true, day("2025-03-08")), 2025030800, "a new day starts at 00");
  assert.equal(nextSerial(2099010100, true, day("2025-03-08")), 2099010101, "a serial ahead of the date still grows");
  // the old hash serial could be anything up to 1999999999: it grows too
  assert.equal(nextSerial(1987654321, true, day("2025-03-08")), 2025030800);
  assert.throws(() => nextSerial(0xffffffff, true, day("2025-03-08")), /cannot grow/);
});

test("zoneFor: the zone on the host is kept while its records are the same; a change gets a greater serial", () => {
  const fwd = zones(ctx)[0]!;
  const first = zoneFor(fwd.render, undefined, day("2025-03-07"));
  assert.equal(first.serial, 2025030700);
  assert.equal(serialOf(first.content), 2025030700);
  // same records a day later: unchanged, byte for byte
  const again = zoneFor(fwd.render, first.content, day("2025-03-08"));
  assert.deepEqual(again, { content: first.content, serial: 2025030700, changed: false });
  // the host's zone differs in a record (an edit, or a spec change): strictly greater
  const edited = first.content.replace("10.17.4.24", "10.17.4.99");
  const sameDay = zoneFor(fwd.render, edited, day("2025-03-07"));
  assert.equal(sameDay.serial, 2025030701);
  assert.equal(sameDay.content, fwd.render(2025030701));
  assert.equal(zoneFor(fwd.render, edited, day("2025-03-09")).serial, 2025030900, "across a day boundary");
  const ahead = edited.replace("2025030700", "2031120105");
  assert.equal(zoneFor(fwd.render, ahead, day("2025-03-09")).serial, 2031120106, "current already ahead of the date");
  // a zone of the old renderer (hash serial, other records): the next serial is the date's
  const hashed = edited.replace("2025030700", "1480007326");
  assert.equal(zoneFor(fwd.render, hashed, day("2025-03-09")).serial, 2025030900);
  // same records under a hash serial: kept as they are (nothing changed for secondaries)
  assert.equal(zoneFor(fwd.render, first.content.replace("2025030700", "1480007326"), day("2025-03-09")).changed, false);
});

// ---------------------------------------------------------------------------------------
// zones and records

test("forward zone: every host, every VIP and the service names; CNAMEs point at names with addresses", () => {
  const fwd = records(forwardZone(ctx, 2025030700));
  const byName = new Map(fwd.map(([o, t, v]) => [o, { t, v }]));
  for (const h of ctx.spec.hosts) assert.deepEqual(byName.get(h.name), { t: "A", v: h.address }, h.name);
  for (const v of ctx.spec.vips) assert.deepEqual(byName.get(v.name), { t: "A", v: v.address }, v.name);
  for (const alias of ["ingress", "grafana", "prometheus", "kibana"]) assert.deepEqual(byName.get(alias), { t: "CNAME", v: "api" }, alias);
  assert.deepEqual(byName.get("ipa"), { t: "CNAME", v: "freeipa1" });
  assert.deepEqual(byName.get("nfs"), { t: "CNAME", v: "storage1" });
  for (const [, t, v] of fwd) if (t === "CNAME") assert.equal(byName.get(v)?.t, "A", `${v} is an address, not another alias`);
  assert.equal(new Set(fwd.map(([o]) => o)).size, fwd.length, "each name once");
});

test("reverse zone: one PTR per host and VIP address, each exactly once (10.17.5.10 → api)", () => {
  const rev = records(reverseZone(ctx, 2025030700));
  assert.equal(reverseZoneName(ctx), "17.10.in-addr.arpa");
  assert.ok(rev.every(([, t]) => t === "PTR"));
  const owners = rev.map(([o]) => o);
  assert.equal(new Set(owners).size, owners.length, "no owner name twice");
  assert.equal(rev.length, ctx.spec.hosts.length + ctx.spec.vips.length);
  const ptr = new Map(rev.map(([o, , v]) => [o, v]));
  assert.equal(ptr.get("10.5"), "api.microcloud.lan.");
  assert.equal(ptr.get("10.2"), "edge.microcloud.lan.");
  assert.equal(ptr.get("11.3"), "freeipa1.microcloud.lan.");
  // an address named twice (a VIP on a host's address) still gets one PTR: the host's
  const shared = edited((s) => s.vips.push({ ...s.vips[0]!, name: "lb1", address: "10.17.5.11" }));
  assert.deepEqual(ptrRecords(shared).filter((p) => p.address === "10.17.5.11").map((p) => p.target), ["loadbalancer1.microcloud.lan."]);
});

test("zones pass named-checkzone and the bind9 config passes named-checkconf", (t) => {
  requireTool("named-checkzone");
  const dir = tempDir(t);
  for (const z of zones(ctx)) {
    const f = join(dir, `${z.name}.zone`);
    writeFileSync(f, z.render(2025030700));
    const r = run("named-checkzone", [z.name, f]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /loaded serial 2025030700/);
  }
  // Debian: each file checked alone (as the phase does), then all together with the zones loaded
  const deb = BIND_LAYOUTS["debian-like"].config(ctx);
  for (const f of deb) {
    const p = join(dir, f.path.split("/").pop()!);
    writeFileSync(p, f.content);
    const r = run("named-checkconf", [p]);
    assert.equal(r.status, 0, `${f.path}: ${r.stdout}${r.stderr}`);
  }
  const moved = (text: string) => text.replaceAll("/var/lib/bind", dir).replaceAll("/var/cache/bind", dir).replaceAll("/var/named", dir);
  const all = join(dir, "named.conf");
  writeFileSync(all, deb.map((f) => moved(f.content)).join("\n"));
  const z = run("named-checkconf", ["-z", all]);
  assert.equal(z.status, 0, z.stdout + z.stderr);
  assert.match(z.stdout, /zone microcloud\.lan\/IN: loaded serial/);
  // AlmaLinux: the whole named.conf; its include of the package's rfc1912 zones exists only there
  const rhel = BIND_LAYOUTS["rhel-like"].config(ctx)[0]!;
  writeFileSync(all, moved(rhel.content).replace('include "/etc/named.rfc1912.zones";', ""));
  const r = run("named-checkconf", ["-z", all]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  // a broken config is refused: the check can fail
  writeFileSync(all, deb[0]!.content.replace("recursion yes;", "recursion maybe;"));
  assert.notEqual(run("named-checkconf", [all]).status, 0);
});

test("named serves the zones: forward and reverse to the private network, refused to others, new serial after a reload", (t) => {
  requireTool("named");
  requireTool("dig");
  const dir = tempDir(t, "fmchelp-dns-");
  chmodSync(dir, 0o755); // named runs as bind and must read its files
  const deb = BIND_LAYOUTS["debian-like"].config(ctx);
  const options = deb[0]!.content
    .replace("/var/cache/bind", dir)
    .replace("dnssec-validation auto;", `dnssec-validation auto;\n\tpid-file "${dir}/named.pid";\n\tsession-keyfile "${dir}/session.key";`);
  const local = deb[1]!.content.replaceAll("/var/lib/bind", dir);
  writeFileSync(join(dir, "options.conf"), options);
  writeFileSync(join(dir, "local.conf"), local);
  // an rndc key of our own: the package's belongs to the bind user of this machine
  assert.equal(run("rndc-confgen", ["-a", "-c", join(dir, "rndc.key"), "-k", "fmc-test"]).status, 0);
  writeFileSync(
    join(dir, "named.conf"),
    [`include "${dir}/options.conf";`, `include "${dir}/local.conf";`, `include "${dir}/rndc.key";`, 'controls { inet 127.0.0.1 port 953 allow { 127.0.0.1; } keys { "fmc-test"; }; };', ""].join("\n"),
  );
  const fwd = zones(ctx)[0]!;
  for (const z of zones(ctx)) writeFileSync(join(dir, `${z.name}.zone`), z.render(2025030700));
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);

  inNetns((srv) =>
    inNetns((client) => {
      const ip = (...a: string[]) => assert.equal(run("ip", a).status, 0, a.join(" "));
      // the DNS host (10.17.3.11) and a client that also has an address outside the private network
      ip("-n", srv, "link", "set", "lo", "up");
      ip("-n", srv, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", client);
      ip("-n", srv, "addr", "add", "10.17.3.11/16", "dev", "v0");
      ip("-n", srv, "addr", "add", "192.0.2.1/24", "dev", "v0");
      ip("-n", srv, "link", "set", "v0", "up");
      ip("-n", client, "addr", "add", "10.17.4.24/16", "dev", "v1");
      ip("-n", client, "addr", "add", "192.0.2.9/24", "dev", "v1");
      ip("-n", client, "link", "set", "v1", "up");
      const named = spawn("ip", ["netns", "exec", srv, "named", "-g", "-c", join(dir, "named.conf")], { stdio: ["ignore", "ignore", "pipe"] });
      let log = "";
      named.stderr.on("data", (d: Buffer) => (log += d.toString()));
      try {
        const dig = (from: string, ...q: string[]) => run("ip", ["netns", "exec", client, "dig", "+time=1", "+tries=1", "-b", from, "@10.17.3.11", ...q]);
        // dig reports a timeout or a refused query on stdout as ";;" lines: never an answer
        const answer = (...q: string[]) => dig("10.17.4.24", "+short", ...q).stdout.trim().split("\n").filter((l) => l && !l.startsWith(";;"));
        // ready when named answers with the record, not merely when dig printed something
        for (let i = 0; i < 50 && answer("freeipa1.microcloud.lan")[0] !== "10.17.3.11"; i++) spawnSync("sleep", ["0.1"]);
        for (const h of ctx.spec.hosts) {
          assert.deepEqual(answer(`${h.name}.microcloud.lan`), [h.address], `${h.name}\n${log}`);
          assert.deepEqual(answer("-x", h.address), [`${h.name}.microcloud.lan.`], `PTR of ${h.address}`);
        }
        for (const v of ctx.spec.vips) {
          assert.deepEqual(answer(`${v.name}.microcloud.lan`), [v.address]);
          assert.deepEqual(answer("-x", v.address), [`${v.name}.microcloud.lan.`]);
        }
        assert.deepEqual(answer("grafana.microcloud.lan"), ["api.microcloud.lan.", "10.17.5.10"]);
        assert.deepEqual(answer("ingress.microcloud.lan"), ["api.microcloud.lan.", "10.17.5.10"]);
        // from outside the private network: refused; nothing listens on other addresses
        assert.match(dig("192.0.2.9", "worker1.microcloud.lan").stdout, /status: REFUSED/);
        assert.notEqual(run("ip", ["netns", "exec", client, "dig", "+time=1", "+tries=1", "@192.0.2.1", "worker1.microcloud.lan"]).status, 0);
        // a change: the phase's serial goes up and named serves it after a reload
        const changed = zoneFor((s) => fwd.render(s).replace("10.17.4.26", "10.17.4.36"), fwd.render(2025030700), day("2025-03-07"));
        assert.equal(changed.serial, 2025030701);
        writeFileSync(join(dir, "microcloud.lan.zone"), changed.content);
        const reload = run("ip", ["netns", "exec", srv, "rndc", "-k", join(dir, "rndc.key"), "-s", "127.0.0.1", "reload"]);
        assert.equal(reload.status, 0, reload.stderr);
        for (let i = 0; i < 30 && answer("worker3.microcloud.lan")[0] !== "10.17.4.36"; i++) spawnSync("sleep", ["0.1"]);
        assert.deepEqual(answer("worker3.microcloud.lan"), ["10.17.4.36"]);
        assert.equal(answer("SOA", "microcloud.lan")[0]!.split(" ")[2], "2025030701");
      } finally {
        named.kill("SIGTERM");
        spawnSync("sleep", ["0.3"]);
        if (named.exitCode === null) named.kill("SIGKILL");
      }
    }),
  );
});

// ---------------------------------------------------------------------------------------
// FreeIPA scripts, run against stubs

/** A directory of stub commands first in PATH, each logging its argv (one line per call). */
function stubs(dir: string, scripts: Record<string, string>): NodeJS.ProcessEnv {
  const bin = join(dir, "bin");
  mkdirSync(bin, { recursive: true });
  for (const [name, body] of Object.entries(scripts)) {
    writeFileSync(join(bin, name), `#!/bin/bash\nprintf '%s\\n' "${name} $*" >> ${dir}/argv.log\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  return { ...process.env, PATH: `${bin}:${process.env.PATH}` };
}

/** The rendered script with its fixed host paths moved into the sandbox. */
const sandboxed = (text: string, dir: string) => text.replaceAll("/root/.fmc", `${dir}/fmc`).replaceAll("/etc/hosts", `${dir}/hosts`).replaceAll("/etc/ipa/", `${dir}/ipa/`);

function secretsIn(dir: string, c: ClusterContext) {
  mkdirSync(join(dir, "fmc"), { recursive: true, mode: 0o700 });
  for (const name of ["ipa-admin", "ipa-directory-manager"] as const) writeFileSync(join(dir, "fmc", name), `${c.secrets.get(name)}\n`, { mode: 0o600 });
}

test("FreeIPA scripts are valid bash and hold no secret", () => {
  const artifacts = renderDns(ipaCtx);
  const scripts = artifacts.filter((a) => a.path.endsWith(".sh"));
  assert.deepEqual(scripts.map((a) => a.path).sort(), [
    "identity/freeipa1-records.sh", "identity/freeipa1-server-install.sh", "identity/loadbalancer1-client-install.sh", "identity/loadbalancer2-client-install.sh",
    "identity/postgresql1-client-install.sh", "identity/traefik1-client-install.sh", "identity/traefik2-client-install.sh",
  ]);
  for (const s of scripts) {
    const r = run("bash", ["-n"], { input: s.content });
    assert.equal(r.status, 0, `${s.path}: ${r.stderr}`);
    assert.deepEqual(ipaCtx.secrets.leaksInto(s.content), [], s.path);
    assert.doesNotMatch(s.content, /--(ds-|admin-)?password[ =]+["$']/, `${s.path}: no password option on a shell line`);
    assert.ok(!s.secret);
  }
  // bind9 renders its config, not the FreeIPA scripts
  assert.ok(!renderDns(ctx).some((a) => a.path.startsWith("identity/")));
  assert.ok(renderDns(ctx).some((a) => a.path === "dns/freeipa1/etc/named.conf"));
});

test("ipa-server-install gets the passwords in-process: no process's argv holds them", (t) => {
  const dir = tempDir(t);
  secretsIn(dir, ipaCtx);
  // the installer's interpreter: logs its argv, then runs the heredoc with a stub ServerInstall
  const fakePy = join(dir, "py");
  mkdirSync(join(dir, "mod", "ipaserver", "install"), { recursive: true });
  for (const p of ["ipaserver/__init__.py", "ipaserver/install/__init__.py"]) writeFileSync(join(dir, "mod", p), "");
  writeFileSync(join(dir, "mod", "ipaserver", "install", "ipa_server_install.py"), `class ServerInstall:\n    @staticmethod\n    def main(argv):\n        open("${dir}/inprocess.argv", "w").write("\\n".join(argv))\n        return 0\n`);
  writeFileSync(fakePy, `#!/bin/bash\nprintf '%s\\n' "py $*" >> ${dir}/argv.log\nshift 2\nexec python3 -c 'import sys; sys.path.insert(0, "${dir}/mod"); sys.argv = ["-"] + sys.argv[1:]; exec(sys.stdin.read())' "$@"\n`);
  chmodSync(fakePy, 0o755);
  const env = stubs(dir, {
    ipactl: "exit 3", // not installed yet
    dnf: "exit 0",
    getent: 'echo "10.17.3.11      STREAM freeipa1.microcloud.lan"',
  });
  writeFileSync(join(dir, "bin", "ipa-server-install"), `#!${fakePy} -I\n`);
  chmodSync(join(dir, "bin", "ipa-server-install"), 0o755);
  const script = sandboxed(ipaServerInstall(ipaCtx), dir);
  const r = run("bash", ["-c", script], { env });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const argvLog = readFileSync(join(dir, "argv.log"), "utf8");
  assert.match(argvLog, /^dnf install -y freeipa-server freeipa-server-dns$/m);
  assert.match(argvLog, /^py -I - --realm MICROCLOUD\.LAN --domain microcloud\.lan --hostname freeipa1\.microcloud\.lan --ip-address 10\.17\.3\.11 --setup-dns/m);
  assert.deepEqual(ipaCtx.secrets.leaksInto(argvLog + r.stdout + r.stderr), [], "no password in any argv or output");
  const inner = readFileSync(join(dir, "inprocess.argv"), "utf8").split("\n");
  assert.equal(inner[inner.indexOf("--ds-password") + 1], ipaCtx.secrets.get("ipa-directory-manager"), "delivered from the 0600 file");
  assert.equal(inner[inner.indexOf("--admin-password") + 1], ipaCtx.secrets.get("ipa-admin"));
  assert.ok(inner.includes("--unattended") && inner.includes("--reverse-zone") && inner.includes("17.10.in-addr.arpa."));
  // a loose password file is refused; the FQDN on a loopback address stops it before anything is installed
  chmodSync(join(dir, "fmc", "ipa-admin"), 0o644);
  assert.equal(run("bash", ["-c", script], { env }).status, 2);
  chmodSync(join(dir, "fmc", "ipa-admin"), 0o600);
  writeFileSync(join(dir, "bin", "getent"), '#!/bin/bash\necho "127.0.0.1 STREAM freeipa1.microcloud.lan"\n');
  const loop = run("bash", ["-c", script], { env });
  assert.equal(loop.status, 2);
  assert.match(loop.stderr, /must resolve to 10\.17\.3\.11/);
});

/** A fake IPA: records and hosts as files under dir/ipa-state. */
const FAKE_IPA = (dir: string) => `
S=${dir}/ipa-state; mkdir -p "$S/hosts"
case "$1" in
  dnszone-show) [ -e "$S/zone-$2" ] ;;
  dnszone-add) touch "$S/zone-$2" ;;
  dnsrecord-show) [ -f "$S/$2/$3" ] && { echo "  idnsname: $3"; cat "$S/$2/$3"; } ;;
  dnsrecord-add)
    [ -n "\${FAIL_NAME:-}" ] && [ "$3" = "$FAIL_NAME" ] && { echo "ipa: ERROR: injected" >&2; exit 1; }
    opt=\${4#--}; type=\${opt%%-rec=*}; value=\${4#*=}
    mkdir -p "$S/$2"; echo "  \${type}record: $value" >> "$S/$2/$3" ;;
  host-show) [ -f "$S/hosts/$2" ] && cat "$S/hosts/$2" ;;
  host-add|host-mod) echo "  Keytab: False" > "$S/hosts/$2"; echo "  Random password: otp-$RANDOM-$2" | tee "$S/otp-$2" ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac`;

test("the record script: idempotent, goes on after a failure, reports it, one PTR per address, OTPs in 0600 files", (t) => {
  const dir = tempDir(t);
  secretsIn(dir, ipaCtx);
  const admin = ipaCtx.secrets.get("ipa-admin");
  const env = stubs(dir, {
    ipa: FAKE_IPA(dir),
    kinit: `read -r pw; [ "$pw" = ${JSON.stringify(admin)} ]`,
    kdestroy: "true",
  });
  const script = sandboxed(ipaRecords(ipaCtx), dir);
  const first = run("bash", ["-c", script], { env: { ...env, FAIL_NAME: "edge" } });
  assert.equal(first.status, 1, "a failure is reported with a non-zero exit");
  assert.match(first.stderr, /fmc: failed: edge\.microcloud\.lan\. a 10\.17\.2\.10/);
  const state = join(dir, "ipa-state");
  // the script went on after the failure: the records after edge and the PTRs exist
  assert.ok(existsSync(join(state, "microcloud.lan.", "nfs")));
  for (const p of ptrRecords(ipaCtx)) {
    const lines = readFileSync(join(state, "17.10.in-addr.arpa.", p.label), "utf8").split("\n").map((l) => l.trim()).filter(Boolean);
    assert.deepEqual(lines, [`ptrrecord: ${p.target}`], `PTR ${p.label} exactly once`);
  }
  // one-time passwords for the AlmaLinux clients only, private files
  const otps = readdirSync(join(dir, "fmc", "otp")).sort();
  assert.deepEqual(otps, ["loadbalancer1.microcloud.lan", "loadbalancer2.microcloud.lan", "postgresql1.microcloud.lan", "traefik1.microcloud.lan", "traefik2.microcloud.lan"]);
  for (const f of otps) {
    assert.equal(statSync(join(dir, "fmc", "otp", f)).mode & 0o777, 0o600);
    assert.equal(readFileSync(join(dir, "fmc", "otp", f), "utf8"), readFileSync(join(state, `otp-${f}`), "utf8").replace("  Random password: ", ""));
  }
  const argv1 = readFileSync(join(dir, "argv.log"), "utf8");
  assert.ok(!argv1.includes(admin), "the admin password is read from stdin, not argv");
  assert.ok(!argv1.includes("otp-"), "no one-time password in argv");
  assert.ok(!/--a-create-reverse/.test(argv1));
  // second run: only the failed record is added; no new passwords while they wait for hand-over
  writeFileSync(join(dir, "argv.log"), "");
  const second = run("bash", ["-c", script], { env });
  assert.equal(second.status, 0, second.stderr);
  assert.deepEqual(second.stdout.trim().split("\n"), ["added edge.microcloud.lan. a 10.17.2.10", "fmc: all records and one-time passwords are in place"]);
  const argv2 = readFileSync(join(dir, "argv.log"), "utf8");
  assert.ok(!/host-(add|mod)/.test(argv2));
  assert.equal(argv2.split("\n").filter((l) => l.startsWith("ipa dnsrecord-add")).length, 1);
});

test("client enrollment: the one-time password from its 0600 file, in-process; IPA's address from /etc/hosts", (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, "fmc"), { mode: 0o700 });
  writeFileSync(join(dir, "hosts"), "127.0.0.1 localhost\n");
  const otp = "Otp-4f9c2d1e8b7a";
  writeFileSync(join(dir, "fmc", "ipa-otp"), `${otp}\n`, { mode: 0o600 });
  mkdirSync(join(dir, "mod", "ipaclient", "install"), { recursive: true });
  for (const p of ["ipaclient/__init__.py", "ipaclient/install/__init__.py"]) writeFileSync(join(dir, "mod", p), "");
  writeFileSync(join(dir, "mod", "ipaclient", "install", "ipa_client_install.py"), `class ClientInstall:\n    @staticmethod\n    def main(argv):\n        open("${dir}/inprocess.argv", "w").write("\\n".join(argv))\n        return 0\n`);
  const fakePy = join(dir, "py");
  writeFileSync(fakePy, `#!/bin/bash\nprintf '%s\\n' "py $*" >> ${dir}/argv.log\nshift 2\nexec python3 -c 'import sys; sys.path.insert(0, "${dir}/mod"); sys.argv = ["-"] + sys.argv[1:]; exec(sys.stdin.read())' "$@"\n`);
  chmodSync(fakePy, 0o755);
  const env = stubs(dir, { dnf: "exit 0", getent: "exit 0" });
  writeFileSync(join(dir, "bin", "ipa-client-install"), `#!${fakePy}\n`);
  chmodSync(join(dir, "bin", "ipa-client-install"), 0o755);
  const script = sandboxed(ipaClientInstall(ipaCtx, "traefik1"), dir);
  const r = run("bash", ["-c", script], { env });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const inner = readFileSync(join(dir, "inprocess.argv"), "utf8").split("\n");
  assert.equal(inner[inner.indexOf("--password") + 1], otp);
  assert.ok(!inner.includes("--principal"), "a host password, not admin's");
  assert.ok(inner.includes("--server") && inner.includes("freeipa1.microcloud.lan") && inner.includes("--fixed-primary"));
  const argv = readFileSync(join(dir, "argv.log"), "utf8");
  assert.ok(!argv.includes(otp));
  assert.deepEqual(ipaCtx.secrets.leaksInto(argv + script), []);
  assert.match(readFileSync(join(dir, "hosts"), "utf8"), /^10\.17\.3\.11 freeipa1\.microcloud\.lan freeipa1$/m);
  assert.ok(!existsSync(join(dir, "fmc", "ipa-otp")), "the spent password is removed");
  // once more: already has the IPA server line, and without a password it says where to get one
  const again = run("bash", ["-c", script], { env });
  assert.equal(again.status, 2);
  assert.match(again.stderr, /copy it from freeipa1:\S*\/fmc\/otp\/traefik1\.microcloud\.lan$/m);
  assert.equal(readFileSync(join(dir, "hosts"), "utf8").split("\n").filter((l) => l.includes("freeipa1")).length, 1);
});

test("cloud-init puts the FQDN on the real address, not 127.0.0.1", () => {
  const host = ipaCtx.topo.host("freeipa1");
  const hosts = etcHosts(ipaCtx, host);
  assert.match(hosts, /^10\.17\.3\.11\s+freeipa1\.microcloud\.lan freeipa1$/m);
  assert.doesNotMatch(hosts, /^127\.\S*\s.*freeipa1/m);
  const client = etcHosts(ipaCtx, ipaCtx.topo.host("traefik1"));
  assert.match(client, /^10\.17\.2\.21\s+traefik1\.microcloud\.lan traefik1$/m);
  assert.match(client, /^10\.17\.3\.11\s+freeipa1\.microcloud\.lan freeipa1$/m, "the DNS host without DNS");
  const ud = cloudInit(ipaCtx, host).userData;
  assert.match(ud, /manage_etc_hosts: false/);
  assert.ok(ud.includes("10.17.3.11      freeipa1.microcloud.lan freeipa1"));
});

// ---------------------------------------------------------------------------------------
// the dns phase

const b64 = (s: string) => Buffer.from(s).toString("base64");

function hostFacts(o: { os?: "debian" | "almalinux"; files?: Record<string, { content: string; mode?: number; group?: string }>; named?: string; packages?: string[]; guards?: Record<string, number>; resolv?: string }): HostFacts {
  const os = o.os === "almalinux" ? ['ID="almalinux"', 'ID_LIKE="rhel centos fedora"', 'VERSION_ID="9.4"'] : ["ID=debian", 'VERSION_ID="12"'];
  const all: Record<string, { content: string; mode?: number; group?: string }> = { "/etc/resolv.conf": { content: o.resolv ?? "nameserver 10.17.3.11\n" }, ...o.files };
  const files = Object.entries(all).map(([p, f]) => `${p} ${(f.mode ?? 0o644).toString(8)} root ${f.group ?? "root"} ${b64(f.content)}`);
  const text = [
    "@os", ...os,
    "@hostname", "freeipa1",
    "@addr", "eth0 10.17.3.11/24",
    "@units", ...(o.named ? ["Id=named.service", `ActiveState=${o.named}`, "UnitFileState=enabled"] : []),
    "@packages", ...(o.packages ?? []).map((p) => `${p} install ok installed`),
    "@files", ...files,
    "@guard", ...Object.entries(o.guards ?? {}).map(([k, v]) => `${k} ${v}`),
    "@end",
  ];
  return parseFacts("freeipa1", `${text.join("\n")}\n`);
}

const pcOf = (render: ClusterContext) => ({ render, mask: (t: string) => render.secrets.mask(t), loginUser: () => "root" });

/** The files a plan writes, as the host would have them afterwards. */
function written(changes: readonly Change[]): Record<string, { content: string; mode?: number; group?: string }> {
  return Object.fromEntries(changes.filter((c) => c.file).map((c) => [c.file!.path, { content: c.file!.content, mode: c.file!.mode, group: c.file!.group }]));
}

test("dns phase, bind9: a fresh Debian host gets package, checked files, serials of today, reload; a re-run plans nothing", () => {
  const pc = pcOf(ctx);
  const phase = dnsPhase(() => day("2025-03-07"));
  assert.deepEqual(phase.hosts(pc).map((h) => h.name), ["freeipa1"]);
  const host = ctx.topo.host("freeipa1");
  const req = phase.facts(pc, host);
  assert.ok(req.files!.has("/var/lib/bind/microcloud.lan.zone") && req.files!.has("/etc/bind/named.conf.options"));
  const fresh = phase.plan(pc, host, hostFacts({}));
  assert.deepEqual(fresh.map((c) => c.title), [
    "install bind9",
    "create /etc/bind/named.conf.options",
    "create /etc/bind/named.conf.local",
    "create /var/lib/bind/microcloud.lan.zone",
    "create /var/lib/bind/17.10.in-addr.arpa.zone",
    "enable, start or reload named.service (installing its package may start it with the package's own config first)",
  ]);
  // the DNS host is its own resolver (base phase) and named is not up: the install resolves through upstream
  assert.match(fresh[0]!.commands[0]!.display, /resolving through 1\.1\.1\.1, 9\.9\.9\.9 meanwhile/);
  const files = written(fresh);
  assert.equal(serialOf(files["/var/lib/bind/microcloud.lan.zone"]!.content), 2025030700);
  assert.ok(fresh.filter((c) => c.file).every((c) => /^named-check(conf|zone)/.test(c.file!.validate ?? "")), "every file is checked before it goes live");
  assert.equal(fresh.find((c) => c.path === "/var/lib/bind/17.10.in-addr.arpa.zone")!.file!.validate, "named-checkzone 17.10.in-addr.arpa %s");
  assert.equal(files["/etc/bind/named.conf.options"]!.group, "bind");

  // the host as the plan leaves it, a day later: nothing to do
  const done = hostFacts({ files, named: "active", packages: ["bind9"] });
  assert.deepEqual(dnsPhase(() => day("2025-03-08")).plan(pc, host, done), []);

  // a spec change: the forward zone changes, its serial grows, named reloads; the reverse zone stays
  const moved = contextFor(BIND9.replace("address: 10.17.4.26", "address: 10.17.4.36"), "dns");
  const change = dnsPhase(() => day("2025-03-07")).plan(pcOf(moved), host, done);
  assert.deepEqual(change.map((c) => c.title), [
    "update /var/lib/bind/microcloud.lan.zone",
    "update /var/lib/bind/17.10.in-addr.arpa.zone",
    "reload (configuration changed) named.service",
  ]);
  for (const c of change.filter((x) => x.file)) assert.equal(serialOf(c.file!.content), 2025030701, c.title);
  assert.match(change[0]!.diff!, /^-.*\( 2025030700 .*\n\+.*\( 2025030701 /m);
});

test("dns phase, freeipa: secrets by file (masked), install guarded by ipactl status, records after; a re-run plans nothing", () => {
  const pc = pcOf(ipaCtx);
  const host = ipaCtx.topo.host("freeipa1");
  const phase = dnsPhase(() => day("2025-03-07"));
  const guards = phase.facts(pc, host).guards!;
  assert.equal(guards.get(IPA_INSTALLED_GUARD), "ipactl status");
  const fresh = phase.plan(pc, host, hostFacts({ os: "almalinux", guards: { [IPA_INSTALLED_GUARD]: 1, [IPA_RECORDS_GUARD]: 1 } }));
  assert.deepEqual(fresh.map((c) => c.title), [
    "create /etc/hosts",
    "create /root/.fmc/ipa-directory-manager",
    "create /root/.fmc/ipa-admin",
    "create /root/.fmc/ipa-server-install.sh",
    "create /root/.fmc/ipa-records.sh",
    "install the FreeIPA server with integrated DNS (ipa-server-install)",
    "create the zones' records and the clients' one-time passwords in FreeIPA",
  ]);
  for (const name of ["ipa-admin", "ipa-directory-manager"] as const) {
    const c = fresh.find((x) => x.path === `/root/.fmc/${name}`)!;
    assert.equal(c.file!.mode, 0o600);
    assert.ok(c.file!.secret);
    const value = ipaCtx.secrets.get(name);
    assert.ok(!c.diff!.includes(value), "masked in the plan");
    for (const cmd of c.commands) {
      assert.ok(!cmd.shell.includes(value) && !cmd.display.includes(value), "never on a command line");
      if (cmd.stdin) assert.ok(cmd.stdinSecret);
    }
  }
  for (const c of fresh) for (const cmd of c.commands) assert.deepEqual(ipaCtx.secrets.leaksInto(cmd.shell + cmd.display), [], c.title);
  assert.match(fresh.find((c) => c.title.startsWith("install the FreeIPA"))!.notes.join("\n"), /--timeout/);
  // installed, files in place, records applied: nothing to do
  const done = hostFacts({ os: "almalinux", files: written(fresh), guards: { [IPA_INSTALLED_GUARD]: 0, [IPA_RECORDS_GUARD]: 0 } });
  assert.deepEqual(phase.plan(pc, host, done), []);
  // a record script that never finished runs again, alone
  const unfinished = hostFacts({ os: "almalinux", files: written(fresh), guards: { [IPA_INSTALLED_GUARD]: 0, [IPA_RECORDS_GUARD]: 1 } });
  assert.deepEqual(phase.plan(pc, host, unfinished).map((c) => c.title), ["create the zones' records and the clients' one-time passwords in FreeIPA"]);
  // FreeIPA on a Debian host is refused with a way out
  assert.throws(() => phase.plan(pc, host, hostFacts({})), /FreeIPA needs AlmaLinux/);
});

test("dnsRecords: a VIP named like an alias keeps its own address, and an alias never points at itself", () => {
  const c = edited((s) => (s.vips[1]!.name = "ingress"));
  const recs = dnsRecords(c);
  assert.deepEqual(recs.find((r) => r.name === "ingress"), { name: "ingress", type: "A", value: "10.17.2.10" });
  assert.ok(recs.every((r) => !(r.type === "CNAME" && r.value === r.name)));
  const rev = records(reverseZone(c, 1));
  assert.equal(rev.find(([o]) => o === "10.2")?.[2], "ingress.microcloud.lan.");
});

test("the bootstrap resolver lasts for the install only, and the resolver comes back even when the install fails", (t) => {
  const dir = tempDir(t);
  const resolv = join(dir, "resolv.conf");
  writeFileSync(resolv, "nameserver 10.17.3.11\nsearch microcloud.lan\n");
  const install = script(`cat ${resolv} > ${dir}/seen; exit 7`, "apt-get install -y bind9");
  const c = withBootstrapResolver(install, ["1.1.1.1", "9.9.9.9"]);
  assert.equal(c.display, "apt-get install -y bind9, resolving through 1.1.1.1, 9.9.9.9 meanwhile");
  const r = run("bash", ["-c", c.shell.replaceAll("/etc/resolv.conf", resolv)]);
  assert.equal(r.status, 7, "the install's exit code is kept");
  assert.equal(readFileSync(join(dir, "seen"), "utf8"), "# fmc: bootstrap resolver while the internal DNS is not up\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n");
  assert.equal(readFileSync(resolv, "utf8"), "nameserver 10.17.3.11\nsearch microcloud.lan\n");
  assert.deepEqual(readdirSync(dir).sort(), ["resolv.conf", "seen"], "no backup left behind");
  // named already up, or a resolver elsewhere: the install runs as it is
  const pc = pcOf(ctx);
  const host = ctx.topo.host("freeipa1");
  const plain = dnsPhase(() => day("2025-03-07")).plan(pc, host, hostFacts({ resolv: "nameserver 10.17.3.53\n" }));
  assert.equal(plain[0]!.commands[0]!.display, "apt-get install -y --no-install-recommends bind9 (apt-get update and again if it fails)");
});
