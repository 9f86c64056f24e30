import { test } from "node:test";
import assert from "node:assert/strict";
import { loadSpec } from "../../src/model/load.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { parseCidr, parseIp, overlaps, cidrOf } from "../../src/model/net.js";
import type { Problem } from "../../src/errors.js";

const errors = (yaml: string) => loadSpec(yaml).problems.filter((p) => p.severity === "error");
const find = (ps: Problem[], path: string) => ps.find((p) => p.path === path);
const edit = (...pairs: Array<[string, string]>) => pairs.reduce((s, [a, b]) => {
  assert.ok(s.includes(a), `seed does not contain ${a}`);
  return s.replace(a, b);
}, SEED_YAML);

test("the seed topology is valid and carries its facts", () => {
  const r = loadSpec(SEED_YAML);
  // the one warning: Traefik's binary is the operator's to give (edge.traefikBinary)
  assert.deepEqual(r.problems.map((p) => `${p.severity} ${p.path}`), ["warning edge.traefikBinary"]);
  const spec = r.spec!;
  const addr = (n: string) => spec.hosts.find((h) => h.name === n)?.address;
  assert.deepEqual(["master1", "master2", "master3"].map(addr), ["10.17.4.21", "10.17.4.22", "10.17.4.23"]);
  assert.deepEqual(["worker1", "worker2", "worker3", "storage1"].map(addr), ["10.17.4.24", "10.17.4.25", "10.17.4.26", "10.17.4.27"]);
  assert.equal(addr("freeipa1"), "10.17.3.11");
  assert.equal(addr("postgresql1"), "10.17.3.14");
  assert.equal(addr("vps1"), "10.17.0.1");
  assert.equal(spec.vips.find((v) => v.name === "api")?.address, "10.17.5.10");
  assert.deepEqual(spec.storage?.exports.map((e) => e.path), ["/srv/nfs/postgresql", "/srv/nfs/shared"]);
  assert.equal(spec.storage?.longhornPath, "/mnt/longhorn-disk");
  // defaults are filled in
  assert.equal(spec.loadBalancer.check.interMs, 3000);
  assert.equal(spec.hosts[0]!.interface, "eth0");
});

test("IPv4 helpers", () => {
  assert.equal(parseIp("10.17.4.21"), (10 << 24 >>> 0) + (17 << 16) + (4 << 8) + 21);
  assert.equal(parseIp("10.17.4.256"), undefined);
  assert.equal(parseIp("10.17.4"), undefined);
  assert.equal(parseCidr("10.17.4.1/24"), "host bits are set; did you mean 10.17.4.0/24?");
  assert.equal(parseCidr("10.17.4.0/33"), undefined);
  assert.ok(overlaps(cidrOf("10.17.0.0/16"), cidrOf("10.17.4.0/24")));
  assert.ok(!overlaps(cidrOf("10.17.3.0/24"), cidrOf("10.17.4.0/24")));
});

test("a duplicate address names the host that already has it", () => {
  const ps = errors(edit(["address: 10.17.4.22,", "address: 10.17.4.21,"]));
  const p = find(ps, "hosts[1].address");
  assert.equal(p?.message, "10.17.4.21 is already used by master1");
  assert.equal(p?.line, 26);
});

test("every mistake of a bad spec is reported at once, with paths and hints", () => {
  const bad = edit(
    ["cidr: 10.17.5.0/24", "cidr: 10.17.4.128/25"], // overlapping subnet
    ["address: 10.17.4.23,", "address: 10.17.4.22,"], // duplicate address
    ["roles: [identity]", "roles: [identty]"], // unknown role
    ["  mtu: 1420", "  mtuu: 1420"], // unknown key
    ["nfsExport: /srv/nfs/postgresql", "nfsExport: /srv/nfs/postgres"], // missing export
    ["longhornPath: /mnt/longhorn-disk", "longhornPath: mnt/longhorn-disk"], // relative path
    ["{ name: api,  address: 10.17.5.10,", "{ name: api,  address: 10.17.4.21,"], // VIP = host address
  );
  const ps = errors(bad);
  const paths = ps.map((p) => p.path);
  for (const path of [
    "network.subnets[4].cidr",
    "hosts[2].address",
    "hosts[7].roles[0]",
    "wireguard.mtuu",
    "database.nfsExport",
    "storage.longhornPath",
    "vips[0].address",
  ]) {
    assert.ok(paths.includes(path), `missing a problem at ${path}; got ${paths.join(", ")}`);
  }
  assert.match(find(ps, "network.subnets[4].cidr")!.message, /overlaps subnet "cluster"/);
  assert.equal(find(ps, "hosts[7].roles[0]")!.hint, 'did you mean "identity"?');
  assert.equal(find(ps, "wireguard.mtuu")!.hint, 'did you mean "mtu"?');
  assert.equal(find(ps, "database.nfsExport")!.hint, 'did you mean "/srv/nfs/postgresql"?');
  assert.match(find(ps, "vips[0].address")!.message, /is the address of host master1/);
  assert.ok(ps.every((p) => typeof p.line === "number"), "every problem has a line");
  assert.equal(loadSpec(bad).spec, undefined, "no spec is returned when there are errors");
});

test("server count: zero is an error, an even count a warning", () => {
  const none = SEED_YAML.replace(/roles: \[k3s-server\]/g, "roles: [k3s-agent]");
  const p = find(errors(none), "hosts");
  assert.match(p!.message, /no host has role k3s-server/);
  assert.match(p!.hint!, /k3s-agent hosts need at least one k3s-server/);
  const even = edit(["  - { name: master3, roles: [k3s-server]", "  - { name: master3, roles: [k3s-agent]"]);
  const r = loadSpec(even);
  assert.ok(r.spec, "an even count is still valid");
  assert.ok(r.problems.some((x) => x.severity === "warning" && /2 k3s-server hosts/.test(x.message)));
});

test("an address outside every subnet, and a VIP its holders can't reach", () => {
  const ps = errors(edit(["address: 10.17.4.24,", "address: 10.99.4.24,"], ["address: 10.17.2.10, role: edge", "address: 10.17.3.10, role: edge"]));
  assert.match(find(ps, "hosts[3].address")!.message, /outside every subnet/);
  assert.match(find(ps, "vips[1].address")!.message, /holder traefik1 \(10\.17\.2\.21\) is not/);
});

test("invalid CIDRs and a subnet outside the network", () => {
  const ps = errors(edit(["{ name: tunnel,  cidr: 10.17.0.0/24 }", "{ name: tunnel,  cidr: 10.17.0.1/24 }"], ["{ name: dmz,     cidr: 10.17.2.0/24", "{ name: dmz,     cidr: 10.18.2.0/24"]));
  assert.match(find(ps, "network.subnets[0].cidr")!.message, /host bits are set; did you mean 10\.17\.0\.0\/24/);
  assert.match(find(ps, "network.subnets[1].cidr")!.message, /outside network.cidr/);
});

test("roles that need other roles", () => {
  const noStorage = edit(["roles: [storage, k3s-agent]", "roles: [k3s-agent]"]);
  const ps = errors(noStorage);
  assert.match(find(ps, "services.longhorn")!.message, /no host has role storage/);
  assert.match(find(ps, "storage.host")!.message, /does not have role storage/);
});

test("port conflicts on one host", () => {
  const ps = errors(edit(["{ name: loadbalancer1, roles: [loadbalancer]", "{ name: loadbalancer1, roles: [loadbalancer, k3s-server]"]));
  const p = ps.find((x) => x.path === "hosts[9].roles");
  assert.match(p!.message, /port 6443\/tcp on loadbalancer1 is used by both HAProxy API frontend and kube-apiserver/);
});

test("SSH keys: bad literals and missing files are errors; no key at all is an error", () => {
  const ps = errors(edit(["keys: []                        #", 'keys: ["ssh-rsa", "~/.ssh/definitely-missing.pub"] #']));
  assert.match(find(ps, "ssh.keys[0]")!.message, /not an OpenSSH public key/);
  assert.match(find(ps, "ssh.keys[1]")!.message, /does not exist/);
  const none = errors(edit(["generatedKey: true", "generatedKey: false"]));
  assert.match(find(none, "hosts[0].ssh.keys")!.message, /no SSH key for master1/);
});

test("firewall rule endpoints must resolve", () => {
  const ps = errors(edit(["from: cluster, to: postgresql1", "from: clustr, to: postgresql1"]));
  const p = ps.find((x) => /firewall\.rules\[\d+\]\.from/.test(x.path));
  assert.equal(p?.hint, 'did you mean "cluster"?');
});

test("wrong types and a wrong apiVersion are reported", () => {
  const ps = errors(edit(["apiVersion: fmc.dev/v1alpha1", "apiVersion: fmc.dev/v9"], ["port: 51820", "port: fifty"]));
  assert.match(find(ps, "apiVersion")!.message, /unsupported apiVersion fmc.dev\/v9/);
  assert.match(find(ps, "wireguard.port")!.message, /expected number, got string "fifty"/);
});

test("YAML syntax errors carry a line", () => {
  const ps = errors("apiVersion: fmc.dev/v1alpha1\nhosts: [\n");
  assert.equal(ps.length >= 1, true);
  assert.match(ps[0]!.message, /^YAML:/);
  assert.equal(typeof ps[0]!.line, "number");
});

test("a VM needs a subnet that Terraform can provide", () => {
  const ps = errors(edit(["{ name: dmz,     cidr: 10.17.2.0/24, libvirt: bridge }", "{ name: dmz,     cidr: 10.17.2.0/24 }"]));
  assert.match(find(ps, "hosts[11].vm")!.message, /traefik1 is a VM but its subnet "dmz" has libvirt: none/);
});
