// The first apply on freshly booted hosts, in the order real hardware needs (issue 20):
// fmc must be able to reach every host before any phase has run, and the LAN hosts get
// egress only through the firewall, so the firewall (with forwarding) comes first.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFacts } from "../../src/hosts/facts.js";
import { inventory } from "../../src/engine/inventory.js";
import { PHASES, type PhaseContext } from "../../src/phases/index.js";
import { contextFor } from "../helpers.js";

const ctx = contextFor();
const pc: PhaseContext = { render: ctx, mask: (t: string) => t, loginUser: () => "root" };

test("the spec inventory reaches the firewall on a LAN address, never on its own WireGuard address", () => {
  const dir = mkdtempSync(join(tmpdir(), "fmc-inv-"));
  try {
    const inv = inventory(ctx.spec, dir);
    assert.equal(inv.source, "spec");
    const fw = ctx.topo.host("firewall1");
    const tunnel = ctx.topo.tunnelSubnet!;
    // the seed's firewall1 address is its tunnel address: it exists only after the wireguard phase
    assert.equal(ctx.topo.subnetOf(fw.address), tunnel);
    const target = inv.targets.get("firewall1")!;
    assert.notEqual(ctx.topo.subnetOf(target.address), tunnel, `firewall1 reached at ${target.address}`);
    // it is the firewall's gateway address on a LAN segment, where the libvirt host is on-link
    assert.ok(ctx.topo.lanSegments.some((l) => l.gateway === target.address), `${target.address} is one of firewall1's LAN gateway addresses`);
    // the others: ssh.host where the spec sets it (vps1's public address), else their address
    assert.equal(inv.targets.get("vps1")!.address, ctx.topo.host("vps1").publicAddress);
    for (const h of ctx.spec.hosts.filter((x) => x.name !== "firewall1" && x.name !== "vps1")) assert.equal(inv.targets.get(h.name)!.address, h.address);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the firewall phase runs before any phase that installs packages on a LAN host, and turns forwarding on itself", () => {
  const order = PHASES.map((p) => p.name);
  const fwAt = order.indexOf("firewall");
  assert.ok(fwAt >= 0);
  const fwName = ctx.spec.firewall!.host;
  // every earlier phase touches no LAN host other than the firewall and the VPS
  for (const p of PHASES.slice(0, fwAt)) {
    const lanHosts = p.hosts(pc).filter((h) => h.name !== fwName && !h.roles.includes("gateway"));
    assert.deepEqual(lanHosts.map((h) => h.name), [], `${p.name} runs before the firewall on LAN hosts`);
  }
  // on a bare Debian firewall (forwarding off, as a cloud image boots), the phase turns it on
  const fw = ctx.topo.host(fwName);
  const request = PHASES[fwAt]!.facts(pc, fw);
  assert.ok(request.sysctl?.has("net.ipv4.ip_forward"), "the firewall phase reads ip_forward");
  const facts = parseFacts(fwName, ["@os", "ID=debian", "VERSION_ID=12", "@hostname", fwName, "@sysctl", "net.ipv4.ip_forward=0", "@end", ""].join("\n"));
  const changes = PHASES[fwAt]!.plan(pc, fw, facts);
  const file = changes.find((c) => c.file?.content.includes("net.ipv4.ip_forward = 1"));
  assert.ok(file, "forwarding persisted by the firewall phase");
  const live = changes.findIndex((c) => /set live net\.ipv4\.ip_forward/.test(c.title));
  const load = changes.findIndex((c) => /load the firewall rules/.test(c.title));
  assert.ok(live >= 0 && load > live, "forwarding is set live before the rules load");
  // and only there: base leaves the firewall's forwarding to it (one owner per key)
  const baseOnFw = PHASES.find((p) => p.name === "base")!.facts(pc, fw);
  assert.equal(baseOnFw.sysctl?.has("net.ipv4.ip_forward"), false);
});
