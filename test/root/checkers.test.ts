// Every rendered file that has a checker on this machine passes it: the real daemons'
// own config parsers, run on the files `fmc render` wrote.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fmc, inNetns, requireTool } from "../helpers.js";
import { SEED_YAML } from "../../src/model/seed.js";

let dir: string;
let out: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "fmc-checkers-"));
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 0, r.stderr);
  out = join(dir, "out");
});
after(() => rmSync(dir, { recursive: true, force: true }));

const hostsIn = (sub: string) => readdirSync(join(out, sub));
const check = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: "utf8" });

test("haproxy -c accepts a config with non-default ports on every frontend", () => {
  requireTool("haproxy");
  const spec = join(dir, "ports.yaml");
  writeFileSync(spec, SEED_YAML.replace("k3s:\n", "loadBalancer: { apiPort: 7443, httpPort: 8080, httpsPort: 8443, statsPort: 9404, metricsPort: 9405 }\nk3s:\n"));
  const r = fmc(["render", spec, "-o", "out-ports"], dir);
  assert.equal(r.status, 0, r.stderr);
  const cfgFile = join(dir, "out-ports/haproxy/loadbalancer1/haproxy.cfg");
  const cfg = readFileSync(cfgFile, "utf8");
  const binds = Object.fromEntries([...cfg.matchAll(/^frontend (\S+)\n(?:\s+mode http\n)?\s+bind (\S+)$/gm)].map((m) => [m[1], m[2]]));
  assert.deepEqual(binds, { "k8s-api": ":7443", "ingress-http": ":8080", "ingress-https": ":8443", stats: "127.0.0.1:9404", metrics: "10.17.5.11:9405" });
  const c = check("haproxy", ["-c", "-f", cfgFile]);
  assert.equal(c.status, 0, c.stdout + c.stderr);
});

test("haproxy -c accepts every haproxy.cfg and rejects a broken one", () => {
  requireTool("haproxy");
  const hosts = hostsIn("haproxy");
  assert.deepEqual(hosts, ["loadbalancer1", "loadbalancer2"]);
  for (const h of hosts) {
    const r = check("haproxy", ["-c", "-f", join(out, "haproxy", h, "haproxy.cfg")]);
    assert.equal(r.status, 0, `${h}: ${r.stdout}${r.stderr}`);
  }
  const broken = join(dir, "broken.cfg");
  writeFileSync(broken, readFileSync(join(out, "haproxy/loadbalancer1/haproxy.cfg"), "utf8").replace("balance roundrobin", "balance sideways"));
  assert.notEqual(check("haproxy", ["-c", "-f", broken]).status, 0);
});

test("keepalived --config-test accepts every keepalived.conf", () => {
  requireTool("keepalived");
  const hosts = hostsIn("keepalived");
  assert.deepEqual(hosts, ["loadbalancer1", "loadbalancer2", "traefik1", "traefik2"]);
  for (const h of hosts) {
    // the tracked check script as rendered, where this machine may hold it (never /etc here)
    const script = join(out, "keepalived", h, "fmc-check-proxy");
    execFileSync("chmod", ["0755", script]);
    const conf = join(dir, `keepalived-${h}.conf`);
    writeFileSync(conf, readFileSync(join(out, "keepalived", h, "keepalived.conf"), "utf8").replace(/script "\S+\/fmc-check-proxy /g, `script "${script} `));
    const r = check("keepalived", ["--config-test", "-f", conf]);
    assert.equal(r.status, 0, `${h}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.trim(), "", `${h} config-test printed: ${r.stderr}`);
  }
  const broken = join(dir, "broken-keepalived.conf");
  writeFileSync(broken, readFileSync(join(out, "keepalived/loadbalancer1/keepalived.conf"), "utf8").replace("virtual_router_id 51", "virtual_router_id 300"));
  assert.notEqual(check("keepalived", ["--config-test", "-f", broken]).status, 0);
});

test("nft -c accepts the firewall and VPS rulesets (inside a throwaway namespace)", () => {
  requireTool("nft");
  inNetns((ns) => {
    for (const f of ["firewall/nftables.nft", "wireguard/vps1/nftables.nft"]) {
      const r = check("ip", ["netns", "exec", ns, "nft", "-c", "-f", join(out, f)]);
      assert.equal(r.status, 0, `${f}: ${r.stderr}`);
    }
    const broken = join(dir, "broken.nft");
    writeFileSync(broken, readFileSync(join(out, "firewall/nftables.nft"), "utf8").replace("policy drop", "policy maybe"));
    assert.notEqual(check("ip", ["netns", "exec", ns, "nft", "-c", "-f", broken]).status, 0);
  });
});

test("WireGuard configs: wg-quick strip, then wg setconf on a real wireguard-go device", () => {
  requireTool("wg-quick");
  requireTool("wireguard-go");
  for (const [i, h] of ["vps1", "firewall1"].entries()) {
    const conf = join(dir, `${h}.conf`);
    // wg-quick derives the interface name from the file name
    writeFileSync(conf, readFileSync(join(out, "wireguard", h, "wg0.conf")), { mode: 0o600 });
    const stripped = execFileSync("wg-quick", ["strip", conf], { encoding: "utf8" });
    assert.match(stripped, /^PrivateKey = /m);
    assert.doesNotMatch(stripped, /^(Address|MTU) =/m, "wg-quick-only keys are stripped");
    const strippedFile = join(dir, `${h}.stripped`);
    // wg resolves Endpoint names; point it at loopback so nothing leaves the machine
    writeFileSync(strippedFile, stripped.replace(/^Endpoint = .*:(\d+)$/m, "Endpoint = 127.0.0.1:$1"), { mode: 0o600 });
    inNetns((ns) => {
      // wireguard-go keeps its control socket in /var/run/wireguard, shared by every
      // namespace: a name unique to this run and host avoids talking to a stale one
      const ifname = `fmcwg${process.pid % 10000}${i}`;
      // it daemonizes; with inherited pipes the caller would wait for the daemon to exit
      const started = spawnSync("ip", ["netns", "exec", ns, "wireguard-go", ifname], { stdio: "ignore", timeout: 10_000 });
      assert.equal(started.status, 0, "wireguard-go did not start");
      try {
        const set = check("ip", ["netns", "exec", ns, "wg", "setconf", ifname, strippedFile]);
        assert.equal(set.status, 0, set.stderr);
        const shown = execFileSync("ip", ["netns", "exec", ns, "wg", "show", ifname, "peers"], { encoding: "utf8" }).trim();
        const expected = readFileSync(join(out, "wireguard", h, "wg0.conf"), "utf8").match(/^PublicKey = (.+)$/m)![1];
        assert.equal(shown, expected);
      } finally {
        spawnSync("ip", ["netns", "exec", ns, "ip", "link", "del", ifname]);
      }
    });
  }
});

test("promtool check config accepts prometheus.yml", () => {
  requireTool("promtool");
  const r = check("promtool", ["check", "config", "--syntax-only", join(out, "monitoring/prometheus.yml")]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS/);
});

test("named-checkzone accepts the forward and reverse zones", () => {
  requireTool("named-checkzone");
  for (const [zone, f] of [["microcloud.lan", "microcloud.lan.zone"], ["17.10.in-addr.arpa", "17.10.in-addr.arpa.zone"]] as const) {
    const r = check("named-checkzone", [zone, join(out, "dns", f)]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /OK/);
  }
  const zone = readFileSync(join(out, "dns", "microcloud.lan.zone"), "utf8");
  assert.match(zone, /^api\s+IN A\s+10\.17\.5\.10$/m);
  assert.match(zone, /^master1\s+IN A\s+10\.17\.4\.21$/m);
});

test("the pfSense fragment and the SVG are well-formed XML", () => {
  requireTool("xmllint");
  for (const f of ["firewall/pfsense.xml", "topology.svg"]) {
    const r = check("xmllint", ["--noout", join(out, f)]);
    assert.equal(r.status, 0, `${f}: ${r.stderr}`);
  }
});

test("shell scripts parse with bash -n", () => {
  const scripts = ["storage/storage1/lvm-plan.sh", "identity/freeipa1-server-install.sh", "identity/postgresql1-client-install.sh"];
  for (const s of scripts) {
    const r = check("bash", ["-n", join(out, s)]);
    assert.equal(r.status, 0, `${s}: ${r.stderr}`);
  }
});

/**
 * Lays out a host's Ignition config in a throwaway root as Ignition would (files with
 * their modes, units in /etc/systemd/system), with this machine's systemd units beside
 * them for the targets they order against, and returns the units it carries.
 */
function ignitionRoot(host: string, name = host): { root: string; units: string[] } {
  const ign = JSON.parse(readFileSync(join(out, "ignition", `${host}.ign`), "utf8")) as {
    storage: { files: Array<{ path: string; mode: number; contents: { source: string } }> };
    systemd: { units: Array<{ name: string; contents?: string }> };
  };
  const root = join(dir, `root-${name}`);
  mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
  cpSync("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
  for (const f of ign.storage.files) {
    mkdirSync(dirname(join(root, f.path)), { recursive: true });
    writeFileSync(join(root, f.path), Buffer.from(f.contents.source.split(",")[1]!, "base64"), { mode: f.mode });
  }
  const units = ign.systemd.units.filter((u) => u.contents !== undefined);
  mkdirSync(join(root, "etc/systemd/system"), { recursive: true });
  for (const u of units) writeFileSync(join(root, "etc/systemd/system", u.name), u.contents!);
  // the one file that appears only at first boot: k3s-install.service downloads it
  mkdirSync(join(root, "opt/bin"), { recursive: true });
  writeFileSync(join(root, "opt/bin/k3s"), "#!/bin/sh\n# stand-in for the K3s binary k3s-install.service places here\n", { mode: 0o755 });
  return { root, units: units.map((u) => u.name) };
}

test("systemd-analyze verify passes every unit of storage1's and master1's Ignition (no ordering cycle)", () => {
  requireTool("systemd-analyze");
  for (const host of ["storage1", "master1"]) {
    const { root, units } = ignitionRoot(host);
    assert.ok(units.length >= (host === "storage1" ? 6 : 2), `${host}: ${units.join(", ")}`);
    const r = check("systemd-analyze", ["verify", "--man=no", `--root=${root}`, ...units]);
    assert.equal(r.status, 0, `${host}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /ordering cycle|Unknown (key|section)|Failed to|not executable/, `${host}: ${r.stderr}`);
  }
  // the checker is not a rubber stamp: the storage units as they were before (an LVM
  // service with default dependencies, ordered before its mounts) form a cycle it reports
  const { root } = ignitionRoot("storage1", "storage1-cycle");
  const lvm = join(root, "etc/systemd/system/fmc-lvm.service");
  writeFileSync(lvm, readFileSync(lvm, "utf8").replace("DefaultDependencies=no\n", ""));
  const cyc = check("systemd-analyze", ["verify", "--man=no", `--root=${root}`, "fmc-lvm.service", "srv-nfs-shared.mount"]);
  // systemd 252 logs a cycle but still exits 0: that is why the stderr check above exists
  assert.match(cyc.stderr, /Found ordering cycle/);
});
