// The firewall: the rendered nftables ruleset checked by the real nft (root), its policy
// (any = the LAN side, SSH only from management, ICMPv6 neighbour discovery, MSS clamping,
// no dead WireGuard input rule), the pfSense fragment checked by xmllint, the phase's
// plan from facts, its arm/load/confirm/revert scripts on a real kernel in a throwaway
// namespace, and the engine's confirmation over a new connection with fake transports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { contextFor, inNetns, requireTool, tempDir } from "../helpers.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { firewallNftables, pfsenseFragment } from "../../src/render/firewall.js";
import { tunnelNftables } from "../../src/render/wireguard.js";
import { renderAll } from "../../src/render/index.js";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { RecordingTransport, type Transport } from "../../src/hosts/transport.js";
import type { Command } from "../../src/hosts/command.js";
import { apply, plan, REVERT_MARGIN_MS, type Reconnect } from "../../src/engine/run.js";
import {
  armCommand,
  cancelCommand,
  describeRevert,
  firewall,
  firewallUnit,
  FIREWALL_RULES,
  loadCommand,
  revertedCommand,
} from "../../src/phases/firewall.js";
import { unitPath } from "../../src/ops/unit.js";
import { FmcError } from "../../src/errors.js";

const ctx = contextFor(undefined, "firewall");
const rules = firewallNftables(ctx);
const LAN = '{ "eth1", "eth2", "eth3", "eth4" }';

/** The rules of one chain, without the chain's own type line. */
function chain(text: string, name: string): string[] {
  const body = text.split(new RegExp(`^    chain ${name} \\{\\n`, "m"))[1];
  assert.ok(body, `chain ${name} is present`);
  return body
    .split(/^    \}/m)[0]!
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("type "));
}
const ruleFor = (lines: string[], comment: string) => lines.find((l) => l.endsWith(`comment "${comment}"`));

test("the seed's ruleset passes nft -c, and nft loads it in a namespace", () => {
  requireTool("nft");
  const check = spawnSync("nft", ["-c", "-f", "-"], { input: rules, encoding: "utf8" });
  assert.equal(check.status, 0, check.stderr);
  // the validator is real: a typo fails it
  assert.notEqual(spawnSync("nft", ["-c", "-f", "-"], { input: rules.replace("masquerade", "masquerad"), encoding: "utf8" }).status, 0);
  inNetns((ns) => {
    const load = spawnSync("ip", ["netns", "exec", ns, "nft", "-f", "-"], { input: rules, encoding: "utf8" });
    assert.equal(load.status, 0, load.stderr);
    const listed = spawnSync("ip", ["netns", "exec", ns, "nft", "list", "table", "inet", "fmc_firewall"], { encoding: "utf8" }).stdout;
    assert.match(listed, /dnat ip to 10\.17\.2\.10/);
    // loaded twice: the file replaces only its own table, atomically
    assert.equal(spawnSync("ip", ["netns", "exec", ns, "nft", "-f", "-"], { input: rules, encoding: "utf8" }).status, 0);
  });
});

test("any means the LAN side: the tunnel and the WAN never match it", () => {
  const forward = chain(rules, "forward");
  const dns = ruleFor(forward, "DNS for everyone")!;
  assert.ok(dns.startsWith(`iifname ${LAN} oifname "eth2" ip daddr 10.17.3.11/32 udp dport 53 accept`), dns);
  assert.doesNotMatch(dns, /saddr/);
  // a named source enters on its own subnet's interface (no spoofing from other sides)
  assert.match(ruleFor(forward, "Apps reach PostgreSQL")!, /^iifname "eth3" ip saddr 10\.17\.4\.0\/24 oifname "eth2" ip daddr 10\.17\.3\.14\/32 tcp dport 5432 accept/);
  // `to: any` is the LAN side too
  assert.match(ruleFor(forward, "Metrics scrapes from the cluster")!, new RegExp(`oifname ${LAN.replace(/[{}]/g, "\\$&")} tcp dport`));
  // every accept in forward names where the packet comes from
  for (const l of forward.filter((x) => x.includes(" accept") && !x.startsWith("ct state"))) assert.match(l, /^iifname /, l);
  // to the internet: each subnet from its own interface
  for (const l of forward.filter((x) => x.includes('oifname "eth0"'))) assert.match(l, /^iifname "eth[1-4]" ip saddr 10\.17\.[2-5]\.0\/24 oifname "eth0" /, l);
  assert.deepEqual(chain(rules, "postrouting").filter((l) => l.includes("masquerade")).length, 4);
  for (const l of chain(rules, "postrouting")) assert.match(l, /^ip saddr 10\.17\.[2-5]\.0\/24 oifname "eth0" masquerade/);
});

test("input: SSH only from the management sources, the cluster scrapes node_exporter, no WireGuard port, ICMPv6 ND", () => {
  const input = chain(rules, "input");
  const ssh = input.filter((l) => / dport (22|\{[^}]*\b22\b)/.test(l));
  assert.deepEqual(ssh, [`iifname ${LAN} tcp dport 22 accept comment "SSH to the firewall from any"`, 'iifname "wg0" ip saddr 10.17.0.128/25 tcp dport 22 accept comment "admin peers: SSH to the firewall"']);
  const scoped = firewallNftables(contextFor(SEED_YAML.replace(/management: \[any\]/, "management: [cluster, 10.17.2.5]")));
  assert.deepEqual(
    chain(scoped, "input").filter((l) => l.includes("dport 22")),
    [
      'iifname "eth3" ip saddr 10.17.4.0/24 tcp dport 22 accept comment "SSH to the firewall from cluster"',
      'iifname "eth1" ip saddr 10.17.2.5/32 tcp dport 22 accept comment "SSH to the firewall from 10.17.2.5"',
      'iifname "wg0" ip saddr 10.17.0.128/25 tcp dport 22 accept comment "admin peers: SSH to the firewall"',
    ],
  );
  assert.ok(input.some((l) => /^iifname "eth3" ip saddr 10\.17\.4\.0\/24 tcp dport \{[^}]*\b9100\b/.test(l)), "node_exporter on the firewall, from the cluster");
  assert.ok(!input.some((l) => /\b53\b/.test(l)), "DNS is not opened on the firewall itself");
  assert.ok(!input.some((l) => l.includes("51820")), "firewall1 initiates the tunnel: no input rule for it");
  assert.deepEqual(input.filter((l) => l.includes('"wg0"')).map((l) => /comment "(.+)"$/.exec(l)?.[1]), ["admin peers: SSH to the firewall"], "from the tunnel, only the admin peers' SSH");
  const vps = renderAll(ctx).find((a) => a.path === "wireguard/vps1/nftables.nft")!.content;
  for (const text of [rules, vps]) {
    const nd = chain(text, "input").find((l) => l.startsWith("icmpv6 type {"))!;
    for (const type of ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert"]) assert.ok(nd.includes(type), `${type} in ${nd}`);
  }
});

test("the tunnel's port forwards are DNAT'ed to the edge VIP and accepted; its marks and MSS clamping are the wireguard phase's, not here", () => {
  const pre = chain(rules, "prerouting");
  assert.ok(pre.includes('iifname "wg0" ip daddr 10.17.0.2 tcp dport 443 dnat ip to 10.17.2.10 comment "HTTPS from the tunnel to Traefik"'));
  assert.ok(chain(rules, "forward").some((l) => l.startsWith('iifname "wg0" ct status dnat ip daddr 10.17.2.10 tcp dport 443 accept')));
  assert.doesNotMatch(rules, /ct mark|maxseg/, "one owner for the tunnel's return path: fmc_tunnel");
  const tunnel = tunnelNftables(ctx);
  assert.match(tunnel, /iifname "wg0" ct state new ct mark set 0xca6c/);
  assert.match(tunnel, /oifname "wg0" tcp flags syn tcp option maxseg size set rt mtu/);
});

test("the pfSense fragment is well-formed XML and states the same policy", (t) => {
  requireTool("xmllint");
  const pf = pfsenseFragment(ctx);
  const dir = tempDir(t);
  writeFileSync(join(dir, "pf.xml"), pf);
  const lint = spawnSync("xmllint", ["--noout", join(dir, "pf.xml")], { encoding: "utf8" });
  assert.equal(lint.status, 0, lint.stderr);
  const count = (xpath: string) => Number(spawnSync("xmllint", ["--xpath", `count(${xpath})`, join(dir, "pf.xml")], { encoding: "utf8" }).stdout);
  // an explicit block on every interface: 4 LAN subnets, the tunnel, the WAN
  assert.equal(count("/pfsense/filter/rule[type='block']/source/any"), 6);
  assert.equal(count("/pfsense/filter/rule[type='block' and interface='wan']"), 1);
  assert.equal(count("/pfsense/nat/outbound/rule[interface='wan']"), 4);
  assert.equal(count("/pfsense/filter/rule[type='pass' and destination/network='(self)' and destination/port='22']"), 5, "SSH from the LAN side, one rule per LAN interface, and from the admin peers on the tunnel");
  assert.equal(count("/pfsense/nat/rule[interface='opt1' and target='FMC_edge']"), 2);
  assert.equal(count("/pfsense/filter/rule[contains(descr, ' to the internet') and destination/address='FMCNET_not_internet']/destination/not"), 5, "dmz: NTP and HTTP(S); infra, cluster, lb: all");
  assert.match(pf, /Import \(pfSense/);
});

// --- the phase ---------------------------------------------------------------------

const b64 = (s: string) => Buffer.from(s).toString("base64");
function factsText(o: { installed?: boolean; files?: Record<string, string>; unit?: [string, string]; inSync?: boolean }): string {
  const sections: Record<string, string[]> = {
    os: ["ID=debian", 'VERSION_ID="12"'],
    hostname: ["firewall1"],
    addr: ["eth1 10.17.2.1/24"],
    swap: [],
    units: ["Id=fmc-firewall.service", `ActiveState=${o.unit?.[0] ?? "inactive"}`, `UnitFileState=${o.unit?.[1] ?? "not-found"}`, "", "Id=firewalld.service", "ActiveState=inactive", "UnitFileState=not-found"],
    packages: [`nftables ${o.installed === false ? "unknown ok not-installed" : "install ok installed"}`],
    sysctl: [],
    files: Object.entries(o.files ?? {}).map(([p, c]) => `${p} 644 root root ${b64(c)}`),
    dirs: [],
    users: [],
    guard: [`firewall-in-sync ${o.inSync ? 0 : 1}`],
  };
  return Object.entries(sections).map(([k, v]) => [`@${k}`, ...v].join("\n")).join("\n") + "\n@end\n";
}
const pcOf = (confirmTimeoutS?: number) => ({ render: ctx, mask: (t: string) => ctx.secrets.mask(t), loginUser: () => "root", confirmTimeoutS });
const host = ctx.topo.host("firewall1");
const factsOf = (o: Parameters<typeof factsText>[0]): HostFacts => parseFacts("firewall1", factsText(o));

test("phase plan: install, write checked by nft -c, load with an armed revert, persist; a synced host has nothing to do", () => {
  const fresh = firewall.plan(pcOf(), host, factsOf({ installed: false }));
  assert.deepEqual(
    fresh.map((c) => c.title),
    [
      "install nftables",
      `create ${FIREWALL_RULES}`,
      "load the firewall rules (table inet fmc_firewall), confirmed over a new SSH connection",
      "create /etc/systemd/system/fmc-firewall.service",
      "enable fmc-firewall.service",
    ],
  );
  assert.equal(fresh[1]!.file!.validate, "nft -c -f %s");
  const load = fresh[2]!;
  assert.deepEqual(load.notes, ["armed: reverts in 60 s unless a new SSH connection succeeds"]);
  assert.equal(load.confirm!.timeoutS, 60);
  assert.match(load.commands[0]!.shell, /systemd-run --quiet --unit=fmc-firewall-revert --on-active=60s /);
  const slow = firewall.plan(pcOf(90), host, factsOf({ installed: false })).find((c) => c.confirm)!;
  assert.deepEqual(slow.notes, ["armed: reverts in 90 s unless a new SSH connection succeeds"]);
  assert.match(slow.commands[0]!.shell, /--on-active=90s /);
  const synced = { files: { [FIREWALL_RULES]: rules, [unitPath("fmc-firewall.service")]: firewallUnit() }, unit: ["inactive", "enabled"] as [string, string] };
  assert.deepEqual(firewall.plan(pcOf(), host, factsOf({ ...synced, inSync: true })), []);
  // the same file, but the kernel's table is not the confirmed one (a revert, a hand edit)
  const drifted = firewall.plan(pcOf(), host, factsOf(synced));
  assert.deepEqual(drifted.map((c) => c.title), ["load the firewall rules (table inet fmc_firewall), confirmed over a new SSH connection"]);
  assert.match(drifted[0]!.notes[1]!, /not the one last confirmed/);
});

test("fmc-firewall.service passes systemd-analyze verify", (t) => {
  requireTool("systemd-analyze");
  const dir = tempDir(t);
  writeFileSync(join(dir, "fmc-firewall.service"), firewallUnit());
  const r = spawnSync("systemd-analyze", ["verify", join(dir, "fmc-firewall.service")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), "");
});

test("arm, load, confirm and revert on a real kernel (the no-systemd timer, in throwaway namespaces)", (t) => {
  requireTool("nft");
  const dir = tempDir(t);
  const files: Record<string, Command | string> = { arm: armCommand(1), load: loadCommand(), cancel: cancelCommand(), reverted: revertedCommand, rules };
  for (const [name, c] of Object.entries(files)) writeFileSync(join(dir, name), typeof c === "string" ? c : c.shell);
  // private /etc, /run (no systemd: the detached-sleep timer) and /var/lib; the real ones are untouched
  const scenario = `
set -u
D=${dir}
mount -t tmpfs none /run && mount -t tmpfs none /var/lib && mount -t tmpfs none /etc || exit 9
mkdir -p /etc/fmc && cp $D/rules ${FIREWALL_RULES}
# not confirmed: the table goes back to absent
bash $D/arm && bash $D/load || exit 10
nft list table inet fmc_firewall >/dev/null || exit 11
sleep 2.5
bash $D/reverted || exit 12
nft list tables | grep -q fmc_firewall && exit 13
# confirmed: the rules stay and are kept for boot
bash $D/arm && bash $D/load && bash $D/cancel || exit 14
sleep 2.5
nft list table inet fmc_firewall > $D/confirmed.txt || exit 15
cmp -s /etc/nftables.d/fmc-firewall.nft ${FIREWALL_RULES} || exit 16
bash $D/reverted && exit 17
# a rule set that is not confirmed goes back to exactly the confirmed table
sed -i 's/tcp dport 22 accept/tcp dport 2222 accept/' ${FIREWALL_RULES}
bash $D/arm && bash $D/load || exit 18
nft list table inet fmc_firewall | grep -q 'dport 2222' || exit 19
sleep 2.5
nft list table inet fmc_firewall | cmp -s - $D/confirmed.txt || exit 20
# too late to confirm now
bash $D/cancel 2>/dev/null && exit 21
echo "reverted $(cat /var/lib/fmc/firewall/reverted)"
`;
  writeFileSync(join(dir, "scenario"), scenario);
  inNetns((ns) => {
    const r = spawnSync("ip", ["netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "bash", join(dir, "scenario")], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, `scenario step ${r.status}: ${r.stderr}`);
    const state = describeRevert(r.stdout);
    assert.equal(state.armedSince, undefined);
    assert.equal(state.reverted?.ok, true);
    assert.equal(state.reverted?.restored, "fmc's table as it was");
  });
});

// --- the engine's confirmation ------------------------------------------------------

/** Plans the firewall phase for a fresh host over a recording transport. */
async function planned(transport: RecordingTransport) {
  const pc = pcOf();
  const transports = new Map<string, Transport>([["firewall1", transport]]);
  return { p: await plan(pc, [firewall], transports, { concurrency: 1 }), transports };
}
const factsResponder = (c: Command) => (c.display === "read facts" ? { code: 0, stdout: factsText({ inSync: false }), stderr: "" } : undefined);

test("engine: a confirmed change runs its cancel on a brand-new connection, then goes on", async () => {
  const main = new RecordingTransport("firewall1", [factsResponder]);
  const { p, transports } = await planned(main);
  const opened: RecordingTransport[] = [];
  const reconnect: Reconnect = {
    open: async (h) => {
      const t = new RecordingTransport(h);
      opened.push(t);
      return t;
    },
    where: () => "10.17.2.1:22",
  };
  const slept: number[] = [];
  await apply(p, transports, { concurrency: 1, reconnect, sleep: async (ms) => void slept.push(ms) });
  assert.equal(opened.length, 1);
  assert.notEqual(opened[0], main);
  assert.deepEqual(opened[0]!.log.map((c) => c.shell), [cancelCommand().shell]);
  const ran = main.log.map((c) => c.shell);
  assert.ok(!ran.includes(cancelCommand().shell), "the cancel never runs on the connection that loaded the rules");
  const arm = ran.indexOf(armCommand(60).shell);
  assert.ok(arm >= 0 && ran[arm + 1] === loadCommand().shell, "armed right before the load");
  assert.ok(main.log.some((c) => c.display === "systemctl enable fmc-firewall.service"), "persisted after the confirmation");
  assert.deepEqual(slept, []);
});

test("engine: no new connection → apply waits for the revert, checks it over another one, and says so", async () => {
  const main = new RecordingTransport("firewall1", [factsResponder]);
  const { p, transports } = await planned(main);
  const attempts: string[] = [];
  const proof = new RecordingTransport("firewall1", [(c) => (c.shell === revertedCommand.shell ? { code: 0, stdout: "", stderr: "" } : undefined)]);
  const reconnect: Reconnect = {
    open: async (h) => {
      attempts.push(h);
      if (attempts.length === 1) throw new FmcError("SSH_CONNECT", "firewall1: cannot connect to root@10.17.2.1: Timed out while waiting for handshake");
      return proof;
    },
    where: () => "10.17.2.1:22",
  };
  const slept: number[] = [];
  const started = performance.now();
  await assert.rejects(
    apply(p, transports, { concurrency: 1, reconnect, sleep: async (ms) => void slept.push(ms) }),
    (e: FmcError) => {
      assert.equal(e.code, "REVERTED");
      assert.match(e.message, /a new SSH connection to firewall1 \(10\.17\.2\.1:22\) failed after the new firewall rules \(nftables table inet fmc_firewall\) were applied: firewall1: cannot connect to root@10\.17\.2\.1: Timed out while waiting for handshake — the previous firewall rules \(nftables table inet fmc_firewall\) were restored after 60 s/);
      assert.match(e.hint ?? "", /firewall\.management/);
      return true;
    },
  );
  assert.ok(performance.now() - started < 5_000, "the wait is injected");
  assert.equal(slept.length, 1);
  assert.ok(slept[0]! > 60_000 && slept[0]! <= 60_000 + REVERT_MARGIN_MS, `waited ${slept[0]} ms: the timeout and a margin`);
  assert.equal(attempts.length, 2);
  assert.deepEqual(proof.log.map((c) => c.shell), [revertedCommand.shell]);
  assert.ok(!main.log.some((c) => c.display.includes("enable fmc-firewall.service")), "nothing after the reverted change ran");
});

test("engine: a cancel that fails, a revert that did not report, a lost connection, no way to reconnect", async () => {
  const where = () => "10.17.2.1:22";
  const slept = async () => undefined;
  // the new connection works, but the revert already fired (cancel exits 3)
  {
    const { p, transports } = await planned(new RecordingTransport("firewall1", [factsResponder]));
    const late = new RecordingTransport("firewall1", [(c) => (c.shell === cancelCommand().shell ? { code: 3, stdout: "", stderr: "fmc: too late, the revert already ran" } : { code: 1, stdout: "", stderr: "" })]);
    await assert.rejects(apply(p, transports, { concurrency: 1, reconnect: { open: async () => late, where }, sleep: slept }), /confirming command failed there \(exit 3\): fmc: too late.*the host does not report the revert \(exit 1\)/s);
  }
  // the connection that loaded the rules dies after the arming: the revert fires by itself
  {
    const main = new RecordingTransport("firewall1", [factsResponder, (c) => (c.shell === loadCommand().shell ? (() => { throw new FmcError("SSH_LOST", "firewall1: lost the SSH connection"); })() : undefined)]);
    const { p, transports } = await planned(main);
    const proof = new RecordingTransport("firewall1");
    await assert.rejects(apply(p, transports, { concurrency: 1, reconnect: { open: async () => proof, where }, sleep: slept }), /the connection fmc had open was lost: firewall1: lost the SSH connection — the previous firewall rules .* were restored after 60 s/);
    assert.deepEqual(proof.log.map((c) => c.shell), [revertedCommand.shell]);
  }
  // without a way to open a new connection, nothing is armed or loaded
  {
    const main = new RecordingTransport("firewall1", [factsResponder]);
    const { p, transports } = await planned(main);
    await assert.rejects(apply(p, transports, { concurrency: 1 }), /must be confirmed over a new SSH connection/);
    assert.ok(!main.log.some((c) => c.shell === armCommand(60).shell));
  }
});

// --- issue 20: egress, reply-to through the tunnel, remote admins ------------------

const NOT_INTERNET = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"];
const withSubnet = (name: string, extra: string) => SEED_YAML.replace(new RegExp(`(\\{ name: ${name},\\s+cidr: [0-9./]+)`), `$1, ${extra}`);
const pfCount = (t: { after: (fn: () => void) => void }, pf: string) => {
  const file = join(tempDir(t), "pf.xml");
  writeFileSync(file, pf);
  const lint = spawnSync("xmllint", ["--noout", file], { encoding: "utf8" });
  assert.equal(lint.status, 0, lint.stderr);
  return (xpath: string) => Number(spawnSync("xmllint", ["--xpath", `count(${xpath})`, file], { encoding: "utf8" }).stdout);
};

test("egress: the internet never includes the WAN side's private, shared or link-local ranges; each subnet opens what its egress says", () => {
  const forward = chain(rules, "forward");
  const out = forward.filter((l) => / oifname "eth0" /.test(l));
  assert.ok(out.length > 0);
  for (const l of out) {
    const excluded = /ip daddr != \{ ([^}]+) \}/.exec(l)?.[1]?.split(", ");
    assert.deepEqual(excluded, NOT_INTERNET, l);
  }
  // the seed's cluster subnet keeps everything else, from its own interface and addresses only
  assert.ok(ruleFor(forward, "cluster to the internet")!.startsWith('iifname "eth3" ip saddr 10.17.4.0/24 oifname "eth0" ip daddr != {'));
  assert.doesNotMatch(ruleFor(forward, "cluster to the internet")!, /dport/);
  // the edge subnet (dmz): NTP, HTTP(S) for packages and the Traefik download, nothing else
  const dmz = out.filter((l) => l.includes('iifname "eth1"'));
  assert.deepEqual(dmz.map((l) => / (tcp|udp) dport (.+) accept/.exec(l)?.slice(1).join(" ")), ["tcp { 80, 443 }", "udp 123"]);
  assert.equal(out.filter((l) => l.includes("10.17.2.0/24") && !/dport/.test(l)).length, 0, "the dmz has no open egress");
  // per subnet from the spec: none at all, or a service list
  const none = firewallNftables(contextFor(withSubnet("infra", "egress: []")));
  assert.ok(!chain(none, "forward").some((l) => l.includes("10.17.3.0/24") && l.includes('oifname "eth0"')));
  assert.ok(!chain(none, "postrouting").some((l) => l.includes("10.17.3.0/24")), "nothing to masquerade for a subnet without egress");
  const some = firewallNftables(contextFor(withSubnet("cluster", "egress: [tcp/443, icmp, udp/53, tcp/8443]")));
  const cluster = chain(some, "forward").filter((l) => l.includes('ip saddr 10.17.4.0/24 oifname "eth0"'));
  assert.deepEqual(cluster.map((l) => /\} (.+) accept/.exec(l)?.[1]), ["ip protocol icmp", "tcp dport { 443, 8443 }", "udp dport 53"]);
  // an explicit egress on the edge subnet replaces its default
  const open = firewallNftables(contextFor(withSubnet("dmz", "egress: [any]")));
  assert.ok(chain(open, "forward").some((l) => l.startsWith('iifname "eth1" ip saddr 10.17.2.0/24 oifname "eth0" ip daddr != {') && / accept comment "dmz to the internet"$/.test(l)));
});

test("egress rulesets pass nft -c", () => {
  requireTool("nft");
  for (const yaml of [SEED_YAML, withSubnet("cluster", "egress: [tcp/443, icmp, udp/53]"), withSubnet("dmz", "egress: []")]) {
    const r = spawnSync("nft", ["-c", "-f", "-"], { input: firewallNftables(contextFor(yaml)), encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  }
});

test("pfSense: egress excludes the private ranges, per subnet; forwards from the tunnel pass by filter rules that pf gives reply-to through the tunnel gateway", (t) => {
  requireTool("xmllint");
  const pf = pfsenseFragment(ctx);
  const count = pfCount(t, pf);
  // the alias behind <not/> holds every range that is not the internet
  const alias = /<name>FMCNET_not_internet<\/name>\n\s+<type>network<\/type>\n\s+<address>([^<]+)<\/address>/.exec(pf)?.[1]?.split(" ");
  for (const r of [...NOT_INTERNET, "10.17.0.0/16"]) assert.ok(alias?.includes(r), `${r} in ${alias}`);
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='wan']"), 0);
  // lan is the first LAN subnet, the dmz: NTP and HTTP(S) only
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='lan' and destination/address='FMCNET_not_internet' and destination/not]"), 2);
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='lan' and protocol='udp' and destination/port='123' and destination/not]"), 1);
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='lan' and protocol='tcp' and destination/port='FMC_egress_dmz_tcp' and destination/not]"), 1);
  assert.match(pf, /<name>FMC_egress_dmz_tcp<\/name>\n\s+<type>port<\/type>\n\s+<address>80 443<\/address>/);
  // the other three subnets: everything but the private ranges
  assert.equal(count("/pfsense/filter/rule[type='pass' and destination/address='FMCNET_not_internet' and destination/not and not(protocol)]"), 3);
  const none = pfCount(t, pfsenseFragment(contextFor(withSubnet("infra", "egress: []"))));
  assert.equal(none("/pfsense/nat/outbound/rule[source/network='10.17.3.0/24']"), 0);
  assert.equal(none("/pfsense/filter/rule[type='pass' and interface='opt2' and destination/address='FMCNET_not_internet']"), 0, "infra is opt2");
  // reply-to: the tunnel's gateway on opt1, explicit pass rules (rdr pass would skip it)
  assert.equal(count("/pfsense/gateways/gateway_item[interface='opt1' and gateway='10.17.0.1' and name='FMC_TUNNEL' and ipprotocol='inet']"), 1);
  assert.equal(count("/pfsense/nat/rule/associated-rule-id"), 0, "no rdr pass: its traffic would skip the filter rules that carry reply-to");
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='opt1' and protocol='tcp' and destination/address='FMC_edge' and destination/port='443']"), 1);
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='opt1' and protocol='tcp' and destination/address='FMC_edge' and destination/port='80']"), 1);
  assert.match(pf, /reply-to/);
  assert.match(pf, /IPv4 Upstream gateway FMC_TUNNEL/);
});

test("remote admins (wireguard.adminSubnet): SSH to the hosts and the firewall, the Kubernetes API VIP, from the tunnel only", (t) => {
  const forward = chain(rules, "forward");
  const ssh = ruleFor(forward, "admin peers: SSH to the hosts")!;
  assert.ok(ssh, forward.join("\n"));
  assert.match(ssh, /^iifname "wg0" ip saddr 10\.17\.0\.128\/25 oifname \{ "eth1", "eth2", "eth3", "eth4" \} ip daddr \{ ([0-9.]+, )+[0-9.]+ \} tcp dport 22 accept/);
  const addrs = /ip daddr \{ ([^}]+) \}/.exec(ssh)![1]!.split(", ");
  const lanHosts = ctx.spec.hosts.filter((h) => !h.roles.includes("gateway") && !h.roles.includes("firewall")).map((h) => h.address);
  assert.deepEqual([...addrs].sort(), [...lanHosts].sort());
  assert.equal(ruleFor(forward, "admin peers: the Kubernetes API")!, 'iifname "wg0" ip saddr 10.17.0.128/25 oifname "eth4" ip daddr 10.17.5.10 tcp dport 6443 accept comment "admin peers: the Kubernetes API"');
  assert.equal(ruleFor(chain(rules, "input"), "admin peers: SSH to the firewall")!, 'iifname "wg0" ip saddr 10.17.0.128/25 tcp dport 22 accept comment "admin peers: SSH to the firewall"');
  // a host on another SSH port gets its own rule; an explicit admin subnet is used
  const custom = firewallNftables(contextFor(SEED_YAML.replace("address: 10.17.5.12, ssh: { user: root }", "address: 10.17.5.12, ssh: { user: root, port: 2222 }").replace("persistentKeepalive: 25", "persistentKeepalive: 25\n  adminSubnet: 10.18.0.0/24")));
  assert.ok(chain(custom, "forward").some((l) => l.startsWith('iifname "wg0" ip saddr 10.18.0.0/24') && l.includes("ip daddr 10.17.5.12 tcp dport 2222 accept")));
  // pfSense: the same, on the tunnel interface
  requireTool("xmllint");
  const count = pfCount(t, pfsenseFragment(ctx));
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='opt1' and source/address='FMCNET_admins' and destination/address='FMCNET_ssh22' and destination/port='22']"), 1);
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='opt1' and source/address='FMCNET_admins' and destination/network='(self)' and destination/port='22']"), 1);
  assert.equal(count("/pfsense/filter/rule[type='pass' and interface='opt1' and source/address='FMCNET_admins' and destination/address='FMCNET_k8s_api' and destination/port='6443']"), 1);
  assert.equal(count("/pfsense/aliases/alias[name='FMCNET_admins' and address='10.17.0.128/25']"), 1);
});
