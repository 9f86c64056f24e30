// The review of the rendered traffic path, fixed: Terraform's LAN subnets meet at the
// firewall (isolated libvirt networks, the firewall VM with one NIC per subnet and its LAN
// addresses in cloud-init), validation refuses layouts whose rules between subnets could
// not hold, the WireGuard endpoint gets a DNS-only Cloudflare record, and AlmaLinux hosts
// open their roles' ports and VRRP in firewalld (planned from faked rhel-like facts, the
// scripts run by bash against stand-ins for firewall-cmd and systemctl).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, parseDocument } from "yaml";
import { renderAll } from "../../src/render/index.js";
import { hostAddressXslt, lanNetworks } from "../../src/render/terraform.js";
import { loadSpec } from "../../src/model/load.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { networkOf } from "../../src/model/net.js";
import { emptyRequest, factScript, parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { base, FIREWALLD_GUARD, firewalldOpenings } from "../../src/phases/base.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import type { ClusterContext } from "../../src/state/context.js";
import { contextFor, requireTool, ROOT, tempDir } from "../helpers.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed Terraform JSON

/** The seed with values set at spec paths (as the bad-spec corpus does). */
function seedWith(edits: Array<[Array<string | number>, unknown]>): string {
  const doc = parseDocument(SEED_YAML);
  for (const [path, value] of edits) doc.setIn(path, value);
  return doc.toString();
}

const rendered = (ctx: ClusterContext) => {
  const artifacts = renderAll(ctx);
  return (path: string) => {
    const a = artifacts.find((x) => x.path === path);
    assert.ok(a, `${path} was not rendered`);
    return a.content;
  };
};

const seed = contextFor();
const seedFile = rendered(seed);
const main = JSON.parse(seedFile("terraform/libvirt/main.tf.json")) as Json;

test("Terraform: every LAN subnet is one isolated libvirt network, and none is NAT", () => {
  const lan = seed.topo.lanSegments;
  const nets = main.resource.libvirt_network as Json;
  assert.deepEqual(Object.keys(nets).sort(), lan.map((l) => l.subnet.name).sort(), "one network per LAN subnet, the tunnel's is none");
  assert.equal(new Set(Object.values(nets).map((n) => n.name)).size, lan.length, "libvirt names are distinct");
  const bridges = Object.values(nets).map((n) => n.bridge as string);
  assert.equal(new Set(bridges).size, lan.length, "bridges are distinct");
  for (const b of bridges) assert.ok(b.length <= 15, `${b} fits IFNAMSIZ`);
  for (const l of lan) {
    const n = nets[l.subnet.name];
    assert.equal(n.mode, "none", `${l.subnet.name}: isolated, the KVM host forwards nothing`);
    assert.deepEqual(n.addresses, [l.subnet.cidr]);
    assert.equal(n.dhcp.enabled, false);
    assert.equal(n.dns.enabled, false);
  }
  assert.ok(!JSON.stringify(main).includes('"nat"'), "no libvirt NAT anywhere");
});

test("Terraform: firewall1 has its WAN on the host bridge, then one NIC per LAN subnet in order", () => {
  const fw = main.resource.libvirt_domain.firewall1 as Json;
  assert.ok(fw, "the firewall is a VM in the seed");
  const nics = fw.network_interface as Json[];
  assert.equal(nics.length, 1 + seed.topo.lanSegments.length);
  assert.equal(nics[0]!.bridge, seed.spec.network.bridge);
  seed.topo.lanSegments.forEach((l, i) => assert.equal(nics[i + 1]!.network_id, `\${libvirt_network.${l.subnet.name}.id}`, `NIC ${i + 1} is on ${l.subnet.name}`));
  assert.equal(new Set(nics.map((n) => n.mac)).size, nics.length, "MACs are distinct");
  // every other VM sits on its own subnet's network, without DHCP host entries
  for (const [name, d] of Object.entries(main.resource.libvirt_domain as Json)) {
    if (name === "firewall1") continue;
    const subnet = seed.topo.subnetOf(seed.topo.host(name).address)!;
    assert.deepEqual(d.network_interface, [{ network_id: `\${libvirt_network.${subnet.name}.id}`, wait_for_lease: false }], name);
  }
});

test("cloud-init: firewall1's interfaces, named by MAC, hold every subnet's gateway", () => {
  const nics = main.resource.libvirt_domain.firewall1.network_interface as Json[];
  const cfg = parseYaml(seedFile("terraform/libvirt/cloudinit/firewall1.network-config.yaml")) as Json;
  assert.equal(cfg.version, 2);
  const wan = cfg.ethernets[seed.spec.firewall!.wanInterface];
  assert.equal(wan.match.macaddress, nics[0]!.mac);
  assert.equal(wan["set-name"], "eth0");
  assert.equal(wan.dhcp4, true);
  assert.deepEqual(wan.nameservers.addresses, ["10.17.3.11"], "the internal DNS, not the uplink's");
  const expected = [
    ["eth1", "10.17.2.1/24"],
    ["eth2", "10.17.3.1/24"],
    ["eth3", "10.17.4.1/24"],
    ["eth4", "10.17.5.1/24"],
  ];
  expected.forEach(([ifname, address], i) => {
    const e = cfg.ethernets[ifname!];
    assert.ok(e, `${ifname} configured`);
    assert.equal(e.match.macaddress, nics[i + 1]!.mac, `${ifname} is the NIC on ${seed.topo.lanSegments[i]!.subnet.name}`);
    assert.equal(e["set-name"], ifname);
    assert.deepEqual(e.addresses, [address]);
    assert.equal(e.routes, undefined, "no default route on a LAN side");
  });
  // the hosts' default route is that interface's address
  const m1 = parseYaml(seedFile("terraform/libvirt/cloudinit/freeipa1.network-config.yaml")) as Json;
  assert.deepEqual(m1.ethernets.eth0.routes, [{ to: "0.0.0.0/0", via: "10.17.3.1" }]);
});

test("an explicit firewallInterface names the NIC; the segment order stays the subnet order", () => {
  const ctx = contextFor(seedWith([[["network", "subnets", 3, "firewallInterface"], "lan-cluster"]]));
  const file = rendered(ctx);
  const tf = JSON.parse(file("terraform/libvirt/main.tf.json")) as Json;
  const cfg = parseYaml(file("terraform/libvirt/cloudinit/firewall1.network-config.yaml")) as Json;
  const nic = (tf.resource.libvirt_domain.firewall1.network_interface as Json[])[3]!;
  assert.equal(nic.network_id, "${libvirt_network.cluster.id}");
  assert.equal(cfg.ethernets["lan-cluster"].match.macaddress, nic.mac);
  assert.deepEqual(cfg.ethernets["lan-cluster"].addresses, ["10.17.4.1/24"]);
  assert.equal(cfg.ethernets.eth3, undefined);
  assert.deepEqual(cfg.ethernets.eth4.addresses, ["10.17.5.1/24"], "the others keep their default names");
});

test("libvirt XSLT: the KVM host takes the last usable address, no DHCP, no dnsmasq; read back as the same CIDR", (t) => {
  requireTool("xsltproc");
  const dir = tempDir(t);
  const cluster = lanNetworks(seed).find((l) => l.subnet.name === "cluster")!;
  assert.equal(cluster.hostAddress, "10.17.4.254");
  const xslt = main.resource.libvirt_network.cluster.xml.xslt as string;
  assert.equal(xslt, hostAddressXslt("10.17.4.254"));
  writeFileSync(join(dir, "net.xslt"), xslt);
  // what the provider generates for mode "none" with addresses (libvirtxml's marshalling),
  // with a DHCP range and a DNS element as a NAT network would have them
  writeFileSync(
    join(dir, "net.xml"),
    [
      "<network>",
      "  <name>flatcarmicrocloud-cluster</name>",
      '  <bridge name="fmc3-cluster" stp="on"></bridge>',
      '  <dns enable="yes"></dns>',
      '  <ip address="10.17.4.1" family="ipv4" prefix="24">',
      '    <dhcp><range start="10.17.4.2" end="10.17.4.254"></range></dhcp>',
      "  </ip>",
      '  <dnsmasq:options xmlns:dnsmasq="http://libvirt.org/schemas/network/dnsmasq/1.0"></dnsmasq:options>',
      "</network>",
    ].join("\n"),
  );
  const r = spawnSync("xsltproc", ["--nonet", join(dir, "net.xslt"), join(dir, "net.xml")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /<bridge name="fmc3-cluster"/);
  const ips = [...out.matchAll(/<ip ([^>]*)>/g)].map((m) => m[1]!);
  assert.equal(ips.length, 1);
  assert.match(ips[0]!, /address="10\.17\.4\.254"/);
  assert.match(ips[0]!, /prefix="24"/);
  assert.ok(!out.includes("10.17.4.1\""), "nothing on the KVM host holds the firewall's address");
  assert.ok(!/<dhcp|<range/.test(out), "no DHCP");
  assert.equal([...out.matchAll(/<dns\b[^>]*>/g)].length, 1);
  assert.match(out, /<dns enable="no"\/>/);
  assert.match(out, /dnsmasq:options/, "the rest is copied");
  // the provider reads addresses back as address & netmask: the same CIDR, so no drift
  assert.equal(networkOf("10.17.4.254/24")!.network, networkOf(main.resource.libvirt_network.cluster.addresses[0])!.network);
});

test("no firewall host: the old layout (libvirt NAT) still renders and validates", () => {
  const yaml = readFileSync(join(ROOT, "examples", "single-server", "cluster.yaml"), "utf8");
  const r = loadSpec(yaml);
  assert.deepEqual(r.problems.filter((p) => p.severity === "error"), []);
  const tf = JSON.parse(rendered(contextFor(yaml))("terraform/libvirt/main.tf.json")) as Json;
  assert.deepEqual(Object.values(tf.resource.libvirt_network).map((n) => (n as Json).mode), ["nat"]);
});

test("validate: the seed's routed layout is clean; the failures name the setting", () => {
  const seedProblems = loadSpec(SEED_YAML).problems;
  assert.deepEqual(seedProblems.filter((p) => /libvirt|gateway|firewall1|KVM|proxied|endpoint/.test(p.message)), []);
  const errorsOf = (yaml: string) => loadSpec(yaml).problems.filter((p) => p.severity === "error");
  const nat = errorsOf(seedWith([[["network", "subnets", 3, "libvirt"], "nat"]]));
  assert.deepEqual(nat.map((e) => e.path), ["network.subnets[3].libvirt"]);
  assert.match(nat[0]!.message, /KVM host the gateway of "cluster".*firewall1 could not enforce/);
  assert.match(nat[0]!.hint!, /libvirt: bridge/);
  // the firewall itself may hold a gateway address; a VPS inside a LAN subnet's gateway may not
  const fwOnGateway = errorsOf(seedWith([[["hosts", 13, "address"], "10.17.4.1"]]));
  assert.ok(!fwOnGateway.some((e) => /gateway/.test(e.message)), JSON.stringify(fwOnGateway));
  // a rule inside one subnet needs no router; a rule across subnets does
  const noFw = seedWith([[["hosts", 13, "roles"], ["k3s-agent"]], [["firewall", "rules"], [{ description: "VRRP", from: "lb", to: "lb", protocol: "any" }]]]);
  assert.ok(!errorsOf(noFw).some((e) => e.path === "firewall.rules"));
  const cross = seedWith([[["hosts", 13, "roles"], ["k3s-agent"]], [["firewall", "rules"], [{ description: "API", from: "10.17.4.0/24", to: "api", ports: [6443] }]]]);
  assert.match(errorsOf(cross).find((e) => e.path === "firewall.rules")!.message, /a rule crosses subnets \(firewall\.rules\[0\]: 10\.17\.4\.0\/24 to api\)/);
});

test("Cloudflare: a WireGuard endpoint in the zone gets an unproxied A record; the public names stay proxied", () => {
  const fixture = JSON.parse(readFileSync(join(ROOT, "test", "fixtures", "terraform-cloudflare-5.22.0.json"), "utf8")) as { resources: Record<string, { attributes: string[] }> };
  const cfOf = (yaml: string) => JSON.parse(rendered(contextFor(yaml))("terraform/cloudflare/main.tf.json")) as Json;
  const cf = cfOf(seedWith([[["wireguard", "endpoint"], "vps.example.com"]]));
  const records = cf.resource.cloudflare_dns_record as Json;
  assert.deepEqual(records.wireguard_endpoint, { zone_id: "${var.cloudflare_zone_id}", name: "vps.example.com", type: "A", content: "203.0.113.10", proxied: false, ttl: 1 });
  for (const attr of Object.keys(records.wireguard_endpoint)) assert.ok(fixture.resources.cloudflare_dns_record!.attributes.includes(attr), attr);
  assert.equal(records.apex.proxied, true);
  assert.equal(records.www.proxied, true);
  assert.equal(cf.resource.cloudflare_zone_dnssec.zone.status, "active", "DNSSEC unchanged");
  // listed unproxied by the user: that record, not a second one
  const listed = cfOf(seedWith([[["wireguard", "endpoint"], "vpn.example.com"], [["cloudflare", "records", 2], { name: "vpn", proxied: false }]]));
  assert.equal(listed.resource.cloudflare_dns_record.wireguard_endpoint, undefined);
  assert.equal(listed.resource.cloudflare_dns_record.vpn.proxied, false);
  // an address, or a name outside the zone: no record (the latter warned about)
  for (const endpoint of ["203.0.113.10", "vpn.example.org"]) {
    assert.equal(cfOf(seedWith([[["wireguard", "endpoint"], endpoint]])).resource.cloudflare_dns_record.wireguard_endpoint, undefined, endpoint);
  }
  assert.ok(loadSpec(seedWith([[["wireguard", "endpoint"], "vpn.example.org"]])).problems.some((p) => p.severity === "warning" && p.path === "wireguard.endpoint"));
  assert.ok(!loadSpec(seedWith([[["wireguard", "endpoint"], "vps.example.com"]])).problems.some((p) => p.path.startsWith("cloudflare") || p.path === "wireguard.endpoint"));
});

// --- firewalld on AlmaLinux hosts ------------------------------------------------------

const pc: PhaseContext = { render: seed, mask: (t) => seed.secrets.mask(t), loginUser: () => "root" };
const ALMA = ["ID=\"almalinux\"", 'ID_LIKE="rhel centos fedora"', 'VERSION_ID="9.4"'];
const factsWith = (os: string[], guard: string[]): HostFacts =>
  parseFacts("h", [["@os", ...os], ["@hostname", "h"], ["@guard", ...guard], ["@end"]].map((s) => s.join("\n")).join("\n") + "\n");
const firewalldChanges = (host: string, facts: HostFacts) => base.plan(pc, seed.topo.host(host), facts).filter((c) => /firewalld/.test(c.title));

test("firewalld: what each role opens (VRRP where a VIP is held, never the localhost stats page)", () => {
  const lb = firewalldOpenings(seed.spec, seed.topo.host("loadbalancer1"));
  // 9100: node_exporter, which Prometheus scrapes on the hosts outside K3s
  assert.deepEqual(lb, { ports: ["22/tcp", "80/tcp", "443/tcp", "6443/tcp", "8405/tcp", "9100/tcp"], protocols: ["vrrp"] });
  const edge = firewalldOpenings(seed.spec, seed.topo.host("traefik1"));
  assert.deepEqual(edge.protocols, ["vrrp"]);
  assert.ok(edge.ports.includes("443/tcp") && edge.ports.includes("8082/tcp"));
  const ipa = firewalldOpenings(seed.spec, seed.topo.host("freeipa1"));
  assert.deepEqual(ipa.protocols, [], "no VIP, no VRRP");
  for (const p of ["53/udp", "53/tcp", "80/tcp", "88/udp", "389/tcp", "443/tcp", "464/udp", "636/tcp"]) assert.ok(ipa.ports.includes(p), p);
  assert.deepEqual(firewalldOpenings(seed.spec, seed.topo.host("postgresql1")).ports, ["22/tcp", "5432/tcp", "9100/tcp"]);
});

test("firewalld: planned from rhel-like facts only, and only while the guard finds ports closed", () => {
  assert.ok(base.facts(pc, seed.topo.host("loadbalancer1")).guards?.has(FIREWALLD_GUARD), "the guard is read with the facts");
  const [open, ...rest] = firewalldChanges("loadbalancer1", factsWith(ALMA, [`${FIREWALLD_GUARD} 1`]));
  assert.equal(rest.length, 0);
  assert.ok(open, "closed ports on AlmaLinux: a change");
  assert.equal(open.title, "open 22/tcp 80/tcp 443/tcp 6443/tcp 8405/tcp 9100/tcp vrrp in firewalld");
  assert.match(open.commands[0]!.shell, /firewall-cmd --zone="\$z" --add-protocol=vrrp/);
  assert.match(open.commands[0]!.shell, /firewall-cmd --permanent --zone="\$z" --add-port=22\/tcp --add-port=80\/tcp/);
  assert.deepEqual(firewalldChanges("loadbalancer1", factsWith(ALMA, [`${FIREWALLD_GUARD} 0`])), [], "already open: nothing");
  assert.deepEqual(firewalldChanges("loadbalancer1", factsWith(["ID=debian", 'VERSION_ID="12"'], [`${FIREWALLD_GUARD} 1`])), [], "Debian runs no firewalld by default");
});

/** Stand-ins for firewall-cmd, firewall-offline-cmd and systemctl that keep zones in files. */
function fakeFirewalld(dir: string): { path: string; state: string } {
  const bin = join(dir, "bin");
  const state = join(dir, "state");
  mkdirSync(bin);
  mkdirSync(state);
  const fw = `#!/bin/bash
# firewall-cmd as fmc uses it: zones' ports and protocols, runtime ("live") and permanent
kind=live; zone=public; ops=()
[ "$(basename "$0")" = firewall-offline-cmd ] && kind=perm
for a in "$@"; do
  case "$a" in
    --permanent) kind=perm ;;
    --zone=*) zone=\${a#--zone=} ;;
    *) ops+=("$a") ;;
  esac
done
echo "$(basename "$0") $*" >> "${state}/calls"
# the real one handles one kind of item per call (an elif chain)
printf '%s\\n' "\${ops[@]}" | grep -q '^--add-port=' && printf '%s\\n' "\${ops[@]}" | grep -q '^--add-protocol=' && { echo "mixed options" >&2; exit 2; }
d="${state}/$kind/$zone"; mkdir -p "$d"; touch "$d/ports" "$d/protocols"
for a in "\${ops[@]}"; do
  case "$a" in
    --get-zone-of-interface=*) if [ -f "${state}/iface-zone" ]; then cat "${state}/iface-zone"; exit 0; fi; echo "Error: no zone" >&2; exit 2 ;;
    --get-default-zone) echo public; exit 0 ;;
    --list-ports) echo $(cat "$d/ports"); exit 0 ;;
    --list-protocols) echo $(cat "$d/protocols"); exit 0 ;;
    --add-port=*) grep -qxF "\${a#--add-port=}" "$d/ports" || echo "\${a#--add-port=}" >> "$d/ports" ;;
    --add-protocol=*) grep -qxF "\${a#--add-protocol=}" "$d/protocols" || echo "\${a#--add-protocol=}" >> "$d/protocols" ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
`;
  const systemctl = `#!/bin/bash
case "$1 $*" in
  is-active*firewalld*) [ -f "${state}/running" ] ;;
  is-enabled*firewalld*) [ -f "${state}/enabled" ] ;;
  *) exit 0 ;;
esac
`;
  for (const [name, body] of [["firewall-cmd", fw], ["firewall-offline-cmd", fw], ["systemctl", systemctl]] as const) {
    writeFileSync(join(bin, name), body);
    chmodSync(join(bin, name), 0o755);
  }
  return { path: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin`, state };
}

test("firewalld: facts -> plan -> apply -> facts converges, live and permanent, in the interface's zone", (t) => {
  const dir = tempDir(t);
  const { path, state } = fakeFirewalld(dir);
  const host = seed.topo.host("loadbalancer1");
  const req = emptyRequest();
  req.guards = base.facts(pc, host).guards!;
  const gather = (env: Record<string, string>) => {
    const r = spawnSync("bash", ["-c", factScript(req)], { encoding: "utf8", env: { ...process.env, ...env } });
    assert.equal(r.status, 0, r.stderr);
    // this machine's os-release says Debian: the rest of the facts are real, the OS is AlmaLinux
    return { ...parseFacts("loadbalancer1", r.stdout), os: { id: "almalinux", versionId: "9.4", family: "rhel-like" as const } };
  };
  const run = (shell: string, env: Record<string, string>) => {
    const r = spawnSync("bash", ["-c", shell], { encoding: "utf8", env: { ...process.env, ...env } });
    assert.equal(r.status, 0, r.stderr);
  };
  const lines = (p: string) => readFileSync(join(state, p), "utf8").trim().split("\n").sort();
  const want = ["22/tcp", "443/tcp", "6443/tcp", "80/tcp", "8405/tcp", "9100/tcp"];

  // no firewall-cmd at all (Debian, or firewalld removed): the guard says done
  assert.equal(gather({ PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }).guards.get(FIREWALLD_GUARD), 0);

  // running, the interface bound to zone "internal"
  writeFileSync(join(state, "running"), "");
  writeFileSync(join(state, "iface-zone"), "internal\n");
  const env = { PATH: path };
  const before = gather(env);
  assert.equal(before.guards.get(FIREWALLD_GUARD), 1);
  const [change] = firewalldChanges("loadbalancer1", before);
  run(change!.commands[0]!.shell, env);
  assert.deepEqual(lines("live/internal/ports"), want);
  assert.deepEqual(lines("perm/internal/ports"), want);
  assert.deepEqual(lines("live/internal/protocols"), ["vrrp"]);
  assert.deepEqual(lines("perm/internal/protocols"), ["vrrp"]);
  assert.ok(!readFileSync(join(state, "calls"), "utf8").includes("--reload"), "no reload: no connection is dropped");
  const after = gather(env);
  assert.equal(after.guards.get(FIREWALLD_GUARD), 0);
  assert.deepEqual(firewalldChanges("loadbalancer1", after), [], "a re-plan changes nothing");

  // a port closed by hand at runtime only: planned again
  writeFileSync(join(state, "live/internal/ports"), "22/tcp\n");
  assert.equal(gather(env).guards.get(FIREWALLD_GUARD), 1);

  // enabled but stopped: the permanent configuration, offline, in the default zone
  const dir2 = tempDir(t);
  const off = fakeFirewalld(dir2);
  writeFileSync(join(off.state, "enabled"), "");
  const env2 = { PATH: off.path };
  const stopped = gather(env2);
  assert.equal(stopped.guards.get(FIREWALLD_GUARD), 1);
  run(firewalldChanges("loadbalancer1", stopped)[0]!.commands[0]!.shell, env2);
  assert.deepEqual(readFileSync(join(off.state, "perm/public/ports"), "utf8").trim().split("\n").sort(), want);
  assert.match(readFileSync(join(off.state, "calls"), "utf8"), /^firewall-offline-cmd --zone=public --add-protocol=vrrp$/m);
  assert.equal(gather(env2).guards.get(FIREWALLD_GUARD), 0);
});
