// The lab's network plan, from the seed spec: segments, who routes, what this machine
// and the internet namespace can reach. (The lab itself is exercised in test/root.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import { SEED_YAML } from "../../src/model/seed.js";
import { SpecSchema } from "../../src/model/schema.js";
import { Topology } from "../../src/model/topology.js";
import { planLabNet } from "../../src/lab/network.js";
import { labOverrides, publicNames } from "../../src/lab/lab.js";
import { describeOverrides, withOverrides } from "../../src/engine/inventory.js";
import { cidrOf, contains, ipOf } from "../../src/model/net.js";

const spec = SpecSchema.parse(parse(SEED_YAML));
const topo = new Topology(spec);

test("lab network: one segment per LAN subnet, routed by firewall1 as every subnet's .1", () => {
  const net = planLabNet(spec, topo, spec.hosts);
  assert.deepEqual(
    net.segments.map((s) => `${s.bridge} ${s.name} ${s.cidr} ${s.rootAddress ?? "-"}`),
    ["s0 dmz 10.17.2.0/24 10.17.2.254/24", "s1 infra 10.17.3.0/24 10.17.3.254/24", "s2 cluster 10.17.4.0/24 10.17.4.254/24", "s3 lb 10.17.5.0/24 10.17.5.254/24", "pub public 203.0.113.0/24 203.0.113.254/32", "uplink uplink 198.51.100.0/30 -"],
  );
  const fw = net.hosts.find((h) => h.name === "firewall1")!;
  assert.deepEqual(fw.nics.map((n) => `${n.ifname} ${n.bridge} ${n.address}`), ["eth0 uplink 198.51.100.2/30", "eth1 s0 10.17.2.1/24", "eth2 s1 10.17.3.1/24", "eth3 s2 10.17.4.1/24", "eth4 s3 10.17.5.1/24"]);
  assert.equal(fw.defaultVia, "198.51.100.1");
  assert.equal(fw.sshAddress, "10.17.2.1");
  assert.equal(net.router, undefined, "the firewall routes; no stand-in router");
  const worker = net.hosts.find((h) => h.name === "worker1")!;
  assert.deepEqual(worker.nics, [{ ifname: "eth0", bridge: "s2", address: "10.17.4.24/24" }]);
  assert.equal(worker.defaultVia, "10.17.4.1");
  const vps = net.hosts.find((h) => h.name === "vps1")!;
  assert.deepEqual(vps.nics, [{ ifname: "eth0", bridge: "pub", address: "203.0.113.10/24" }]);
  assert.equal(vps.sshAddress, "203.0.113.10");
  // this machine routes only into the segments it is on: never the uplink, never the tunnel
  assert.deepEqual(net.rootPrefixes, ["10.17.2.0/24", "10.17.3.0/24", "10.17.4.0/24", "10.17.5.0/24", "203.0.113.10/32"]);
  // the public /24 stands for real internet addresses: this machine routes only to the gateway there
  assert.deepEqual(net.segments.find((s) => s.name === "public")?.rootRoutes, ["203.0.113.10/32"]);
});

test("lab network: the internet reaches only the public /24 and the uplink, nothing private", () => {
  const net = planLabNet(spec, topo, spec.hosts);
  assert.equal(net.internet!.clientAddress, "203.0.113.1");
  const privateNet = cidrOf(spec.network.cidr);
  for (const nic of net.internet!.nics) assert.ok(!contains(privateNet, ipOf(nic.address.split("/")[0]!)), `${nic.address} is outside ${spec.network.cidr}`);
  assert.deepEqual(net.internet!.nics.map((n) => n.bridge), ["pub", "uplink"]);
});

test("lab network: the package mirror lives on the lab's internet, at an address the firewall's egress lets through", () => {
  const net = planLabNet(spec, topo, spec.hosts);
  const mirror = net.internet!.mirror!;
  assert.equal(mirror, "192.0.2.80");
  // not in the private network, the public /24 or the uplink; not a range the firewall refuses as egress
  for (const c of [spec.network.cidr, "203.0.113.0/24", "198.51.100.0/30", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]) {
    assert.ok(!contains(cidrOf(c), ipOf(mirror)), `${mirror} is outside ${c}`);
  }
  // only where the firewall host is in the lab: it is the LAN hosts' only way out
  const noFirewall = planLabNet(spec, topo, spec.hosts.filter((h) => !h.roles.includes("firewall")));
  assert.equal(noFirewall.internet?.mirror, undefined);
});

test("lab network: without the firewall host, a stand-in router holds the gateways", () => {
  const hosts = spec.hosts.filter((h) => h.roles.includes("loadbalancer") || h.roles.includes("k3s-agent"));
  const net = planLabNet(spec, topo, hosts);
  assert.deepEqual(net.router!.nics.map((n) => n.address), ["10.17.2.1/24", "10.17.3.1/24", "10.17.4.1/24", "10.17.5.1/24"]);
  assert.equal(net.internet, undefined, "no VPS in the lab: no internet");
});

test("lab network: an address the lab needs that the spec uses is refused", () => {
  const taken = SpecSchema.parse({ ...parse(SEED_YAML), hosts: [...parse(SEED_YAML).hosts, { name: "odd", roles: ["k3s-agent"], os: "flatcar", address: "10.17.4.254" }] });
  assert.throws(() => planLabNet(taken, new Topology(taken), taken.hosts), /10\.17\.4\.254 is used in the spec; the lab needs it for this machine's address on subnet cluster/);
});

test("lab overrides: the stand-ins are applied to the spec the lab runs, and named", () => {
  const o = labOverrides(spec, "203.0.113.1");
  const lab = withOverrides(spec, o);
  assert.equal(lab.edge.engine, "haproxy");
  assert.equal(lab.dns.engine, "bind9");
  assert.deepEqual(lab.wireguard!.forwardFrom.slice(-1), ["203.0.113.1/32"]);
  assert.equal(spec.edge.engine, "traefik", "the spec itself is untouched");
  assert.equal(describeOverrides(o).length, 3);
  assert.deepEqual(publicNames(spec), ["example.com", "www.example.com"]);
});
