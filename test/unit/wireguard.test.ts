// WireGuard: rendered configs checked by the real parsers (wg-quick, wg, nft -c), the
// traffic-path design in the rulesets, remote-admin peers in a real state directory,
// keys kept out of every command line and display, and plans from facts parsed by the
// real fact parser converging to nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SEED_YAML } from "../../src/model/seed.js";
import { Topology } from "../../src/model/topology.js";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { addWireguardPeer, loadOrCreateSecrets, readWireguardPeers, requiredSecrets, rotateSecrets, wireguardPublicKey, type Secrets } from "../../src/state/secrets.js";
import {
  adminSubnetOf,
  GATEWAY_NFT,
  nextPeerAddress,
  peerClientConfig,
  renderWireguard,
  TUNNEL_NFT,
  tunnelNftables,
  tunnelOf,
  vpsNftables,
  wgConfig,
  wgConfPath,
} from "../../src/render/wireguard.js";
import { wireguard, wgCheck, wgQuickPart, GATEWAY_IN_SYNC, GATEWAY_RULES, KERNEL_GUARD } from "../../src/phases/wireguard.js";
import { terminalQr } from "../../src/cli/wireguard-commands.js";
import { pendingMarker } from "../../src/ops/service.js";
import { unitPath } from "../../src/ops/unit.js";
import type { Change } from "../../src/ops/change.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import type { ClusterContext } from "../../src/state/context.js";
import { contextFor, requireTool, ROOT, specFrom, tempDir } from "../helpers.js";

requireTool("wg");
requireTool("wg-quick");
requireTool("nft");

/** Runs a FileSpec-style check ("cmd %s") on a file, as the file operation does on the host. */
function check(validate: string, content: string, dir: string): { status: number | null; out: string } {
  const file = join(dir, `candidate.${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, content, { mode: 0o600 });
  const r = spawnSync("bash", ["-c", validate.replace("%s", '"$1"'), "check", file], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** The seed (or a variant) with a real state directory: generated keys, stored peers. */
function stateContext(dir: string, yaml = SEED_YAML): ClusterContext {
  const spec = specFrom(yaml);
  return { spec, topo: new Topology(spec), secrets: loadOrCreateSecrets({ path: dir }, requiredSecrets(spec)) };
}

const pcOf = (render: ClusterContext): PhaseContext => ({ render, mask: (t) => render.secrets.mask(t), loginUser: () => "root" });

const b64 = (s: string) => Buffer.from(s).toString("base64");

interface FactsSpec { files?: Record<string, string | null>; packages?: string[]; units?: Record<string, [string, string]>; kernel?: boolean; gatewayInSync?: boolean }

/** Facts as the fact script prints them, parsed by the real parser. */
function factsOf(o: FactsSpec = {}): HostFacts {
  return parseFacts("h", factsText(o));
}

/** What the fact script prints for such a host. */
function factsText(o: FactsSpec = {}): string {
  const units = Object.entries(o.units ?? {}).flatMap(([id, [active, enabled]]) => [`Id=${id}`, `ActiveState=${active}`, `UnitFileState=${enabled}`, ""]);
  const files = Object.entries(o.files ?? {}).map(([p, c]) => (c === null ? `${p} -` : `${p} ${p.endsWith(".conf") && p.includes("wireguard") ? "600" : "644"} root root ${b64(c)}`));
  const text = [
    "@os", "ID=debian", 'VERSION_ID="12"',
    "@hostname", "h",
    "@addr",
    "@swap",
    "@units", ...units,
    "@packages", ...(o.packages ?? []).map((p) => `${p} install ok installed`),
    "@sysctl",
    "@files", ...files,
    "@dirs", "@users",
    "@guard", `${KERNEL_GUARD} ${o.kernel ? 0 : 1}`, `${GATEWAY_IN_SYNC} ${o.gatewayInSync ? 0 : 1}`,
    "@end",
  ].join("\n");
  return text + "\n";
}

/** What the host looks like after the planned changes ran: their files written, packages in, units up. */
function afterApply(pc: PhaseContext, changes: readonly Change[], kernel: boolean): HostFacts {
  const files: Record<string, string> = {};
  for (const c of changes) if (c.file) files[c.file.path] = c.file.content;
  const iface = pc.render.spec.wireguard!.interface;
  return factsOf({
    files,
    packages: ["wireguard-tools", "nftables", ...(kernel ? [] : ["wireguard-go"])],
    units: { [`wg-quick@${iface}.service`]: ["active", "enabled"], "fmc-gateway-nftables.service": ["active", "enabled"] },
    kernel,
    // the gateway's confirmed load ran: its table is the confirmed, rendered one
    gatewayInSync: changes.some((c) => c.confirm) || undefined,
  });
}

function everyCommandText(changes: readonly Change[]): string {
  return changes.map((c) => [c.title, ...c.notes, c.diff ?? "", ...c.commands.flatMap((x) => [x.display, x.shell])].join("\n")).join("\n");
}

test("both ends' configs pass wg-quick's and wg's own parsers; a broken one does not", (t) => {
  const dir = tempDir(t);
  const ctx = contextFor();
  const tun = tunnelOf(ctx)!;
  const validate = wgCheck("wg0");
  for (const side of ["gateway", "lan"] as const) {
    const conf = wgConfig(ctx, tun, side);
    const r = check(validate, conf, dir);
    assert.equal(r.status, 0, `${side}: ${r.out}`);
  }
  const lan = wgConfig(ctx, tun, "lan");
  // the check can fail: a mangled key, an unknown key, a bad AllowedIPs
  for (const [what, bad] of [
    ["short key", lan.replace(/PrivateKey = \S+/, "PrivateKey = abc")],
    ["unknown key", lan.replace("MTU = 1420", "MTU = 1420\nListenPrt = 1")],
    ["bad AllowedIPs", lan.replace("AllowedIPs = 0.0.0.0/0", "AllowedIPs = 0.0.0.0/33")],
  ] as const) {
    const r = check(validate, bad, dir);
    assert.notEqual(r.status, 0, `${what} passed the check`);
  }
});

test("the LAN peer: vps1 is its default peer, wg-quick's routing is off, replies go back by fwmark", () => {
  const ctx = contextFor();
  const lan = wgConfig(ctx, tunnelOf(ctx)!, "lan");
  const stripped = spawnSync("bash", ["-c", 'd=$(mktemp -d); cat > "$d/wg0.conf"; chmod 600 "$d/wg0.conf"; wg-quick strip "$d/wg0.conf"; rm -rf "$d"'], { input: lan, encoding: "utf8" });
  assert.equal(stripped.status, 0, stripped.stderr);
  // what wg itself gets: no wg-quick settings left, the peer intact
  assert.doesNotMatch(stripped.stdout, /^(Table|PostUp|PreDown|Address|MTU)\s*=/m);
  assert.match(stripped.stdout, /AllowedIPs = 0\.0\.0\.0\/0\nEndpoint = 203\.0\.113\.10:51820\nPersistentKeepalive = 25/);
  const quick = wgQuickPart(lan);
  assert.ok(quick.includes("table=off"));
  assert.ok(quick.includes("mtu=1420"));
  assert.ok(quick.includes("address=10.17.0.2/24"), "the tunnel subnet is routed on wg0 by its address");
  assert.ok(quick.includes("postup=ip -4 route replace default dev %i table 51820"));
  assert.ok(quick.includes("postup=ip -4 rule add fwmark 0xca6c lookup 51820 priority 20000"));
  assert.ok(quick.includes(`postup=nft -f ${TUNNEL_NFT}`));
  assert.ok(quick.some((l) => l.startsWith("predown=ip -4 rule del fwmark 0xca6c")));
});

test("nftables: both tables pass nft -c; the VPS forwards only from forwardFrom and masquerades nothing", (t) => {
  const dir = tempDir(t);
  const ctx = contextFor();
  const tun = tunnelOf(ctx)!;
  const vps = vpsNftables(ctx, tun);
  const lan = tunnelNftables(ctx);
  for (const [name, text] of [["vps", vps], ["lan", lan]]) {
    const r = check("nft -c -f %s", text!, dir);
    assert.equal(r.status, 0, `${name}: ${r.out}`);
  }
  assert.notEqual(check("nft -c -f %s", vps.replace("dnat ip to", "dnat ipp to"), dir).status, 0, "nft -c can fail");
  assert.doesNotMatch(vps, /masquerade|snat/);
  const dnat = vps.split("\n").filter((l) => /\bdnat ip to\b/.test(l));
  assert.equal(dnat.length, 1);
  const set = /ip saddr \{ ([^}]+) \}/.exec(dnat[0]!)?.[1]?.split(", ");
  assert.deepEqual(set, ctx.spec.wireguard!.forwardFrom, "DNAT only from the forwardFrom set");
  assert.match(dnat[0]!, /^\s+iifname "eth0" ip saddr .* tcp dport \{ 80, 443 \} dnat ip to 10\.17\.0\.2$/);
  assert.match(vps, /iifname "eth0" oifname "wg0" ip daddr 10\.17\.0\.2 tcp dport \{ 80, 443 \} ct status dnat accept/);
  assert.match(vps, /iifname "wg0" oifname "wg0" ip saddr 10\.17\.0\.128\/25 accept/);
  assert.match(vps, /tcp dport 22 accept\n\s+iifname "eth0" udp dport 51820 accept/);
  // the LAN peer marks what came in on the tunnel and restores it on the way back
  assert.match(lan, /type filter hook prerouting priority mangle;[^}]*iifname "wg0" ct state new ct mark set 0xca6c\n\s+iifname != "wg0" ct mark 0xca6c meta mark set ct mark/);
});

test("render: every WireGuard artifact, keys only in the 0600 configs", () => {
  const ctx = contextFor();
  const arts = renderWireguard(ctx);
  assert.deepEqual(arts.map((a) => a.path).sort(), [
    "wireguard/firewall1/fmc_tunnel.nft",
    "wireguard/firewall1/wg0.conf",
    "wireguard/vps1/fmc-gateway-nftables.service",
    "wireguard/vps1/nftables.nft",
    "wireguard/vps1/sysctl.conf",
    "wireguard/vps1/wg0.conf",
  ]);
  for (const a of arts) assert.equal(ctx.secrets.leaksInto(a.content).length > 0, !!a.secret, a.path);
  const unit = arts.find((a) => a.path.endsWith(".service"))!.content;
  assert.match(unit, new RegExp(`ExecStart=/usr/sbin/nft -f ${GATEWAY_NFT}\n`));
  assert.match(unit, /Before=network-pre\.target wg-quick@wg0\.service/);
});

test("add-peer: next free admin address, stored keys (0600), duplicates refused, the gateway gets a /32 peer", (t) => {
  const dir = tempDir(t);
  const ctx = stateContext(dir);
  assert.equal(adminSubnetOf(ctx, tunnelOf(ctx)!), "10.17.0.128/25", "default: the upper half of the tunnel subnet");
  const alice = addWireguardPeer({ path: dir }, "alice", (peers) => nextPeerAddress(ctx, peers));
  const bob = addWireguardPeer({ path: dir }, "bob-laptop", (peers) => nextPeerAddress(ctx, peers));
  assert.equal(alice.peer.address, "10.17.0.129");
  assert.equal(bob.peer.address, "10.17.0.130");
  assert.equal(alice.peer.publicKey, wireguardPublicKey(alice.privateKey));
  assert.throws(() => addWireguardPeer({ path: dir }, "alice", (peers) => nextPeerAddress(ctx, peers)), (e: Error & { code?: string }) => e.code === "PEER_EXISTS");
  assert.throws(() => addWireguardPeer({ path: dir }, "Alice Laptop", () => "10.17.0.200"), (e: Error & { code?: string }) => e.code === "USAGE");
  assert.deepEqual(readWireguardPeers({ path: dir }).map((p) => [p.name, p.address]), [["alice", "10.17.0.129"], ["bob-laptop", "10.17.0.130"]]);
  for (const f of ["secrets.json", "wireguard-peers.json"]) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
  assert.ok(!readFileSync(join(dir, "wireguard-peers.json"), "utf8").includes(alice.privateKey), "the peer list holds no private key");

  // a fresh load (as the next fmc run) renders them into the gateway's config
  const again = stateContext(dir);
  const tun = tunnelOf(again)!;
  const gw = wgConfig(again, tun, "gateway");
  assert.match(gw, new RegExp(`# admin peer alice \\(fmc wireguard add-peer\\)\nPublicKey = ${alice.peer.publicKey.replace(/[+/]/g, "\\$&")}\nPresharedKey = \\S+\nAllowedIPs = 10\\.17\\.0\\.129/32`));
  assert.match(gw, /AllowedIPs = 10\.17\.0\.130\/32/);
  assert.equal(check(wgCheck("wg0"), gw, dir).status, 0);
  // the client's config: through the gateway to the LAN and the tunnel, the internal DNS
  const client = peerClientConfig(again, tun, alice.peer);
  assert.equal(check(wgCheck("wg0"), client, dir).status, 0);
  assert.match(client, /Address = 10\.17\.0\.129\/32\n/);
  assert.match(client, /DNS = 10\.17\.3\.11, microcloud\.lan\n/);
  assert.match(client, /AllowedIPs = 10\.17\.0\.0\/24, 10\.17\.2\.0\/24, 10\.17\.3\.0\/24, 10\.17\.4\.0\/24, 10\.17\.5\.0\/24\n/);
  assert.match(client, new RegExp(`PublicKey = ${again.secrets.wireguardPublic("vps1").replace(/[+/]/g, "\\$&")}\n`));
  assert.match(client, /Endpoint = 203\.0\.113\.10:51820\n/);
  assert.ok(client.includes(alice.privateKey));
  assert.equal(again.secrets.mask(client).includes(alice.privateKey), false, "the peer's key is masked in logs");
});

test("add-peer: a full admin subnet is refused; spec hosts' addresses are never handed out", (t) => {
  const dir = tempDir(t);
  const yaml = SEED_YAML.replace("  lanPeer: firewall1\n", "  lanPeer: firewall1\n  adminSubnet: 10.17.0.0/30\n");
  const ctx = stateContext(dir, yaml);
  // 10.17.0.1 and .2 are vps1 and firewall1: nothing is left in a /30
  assert.throws(() => addWireguardPeer({ path: dir }, "carol", (peers) => nextPeerAddress(ctx, peers)), (e: Error & { code?: string }) => e.code === "PEER_SUBNET_FULL");
  assert.equal(existsSync(join(dir, "wireguard-peers.json")), false, "nothing stored");
  const outside = stateContext(dir, SEED_YAML.replace("  lanPeer: firewall1\n", "  lanPeer: firewall1\n  adminSubnet: 10.18.0.0/29\n"));
  const p = addWireguardPeer({ path: dir }, "dave", (peers) => nextPeerAddress(outside, peers));
  assert.equal(p.peer.address, "10.18.0.1");
  // an admin subnet outside the tunnel's gets a route of its own on both ends
  const again = stateContext(dir, SEED_YAML.replace("  lanPeer: firewall1\n", "  lanPeer: firewall1\n  adminSubnet: 10.18.0.0/29\n"));
  for (const side of ["gateway", "lan"] as const) assert.ok(wgQuickPart(wgConfig(again, tunnelOf(again)!, side)).includes("postup=ip -4 route replace 10.18.0.0/29 dev %i"), side);
});

test("phase: plans from a fresh host converge, keys never reach a command line or a display", (t) => {
  const dir = tempDir(t);
  const ctx = stateContext(dir);
  addWireguardPeer({ path: dir }, "alice", (peers) => nextPeerAddress(ctx, peers));
  const pc = pcOf(stateContext(dir));
  const secrets: Secrets = pc.render.secrets;
  const hosts = wireguard.hosts(pc);
  assert.deepEqual(hosts.map((h) => h.name), ["vps1", "firewall1"]);
  for (const kernel of [false, true]) {
    for (const host of hosts) {
      const req = wireguard.facts(pc, host);
      assert.ok(req.files!.has(wgConfPath("wg0")));
      const plan = wireguard.plan(pc, host, factsOf({ kernel }));
      const text = everyCommandText(plan);
      assert.deepEqual(secrets.leaksInto(text), [], `${host.name}: a key in a title, note, diff, display or command line`);
      const conf = plan.find((c) => c.path === wgConfPath("wg0"))!;
      assert.ok(conf.file!.secret && conf.file!.mode === 0o600);
      assert.ok(secrets.leaksInto(conf.file!.content).length > 0, "the key travels inside the file");
      assert.ok(conf.commands.some((x) => x.stdinSecret), "on stdin, marked secret");
      const install = plan.find((c) => c.title.startsWith("install"))!;
      assert.equal(/wireguard-go/.test(install.title), !kernel, install.title);
      assert.equal(/userspace wireguard-go/.test(install.title), !kernel);
      assert.ok(plan.some((c) => c.title === "enable, start wg-quick@wg0.service"), plan.map((c) => c.title).join("; "));
      if (host.name === "vps1") assert.ok(plan.some((c) => c.path === GATEWAY_RULES && c.file!.validate === "nft -c -f %s"));
      else assert.ok(plan.some((c) => c.path === TUNNEL_NFT));
      // re-running plans nothing
      assert.deepEqual(wireguard.plan(pc, host, afterApply(pc, plan, kernel)).map((c) => c.title), [], `${host.name} converges`);
    }
  }
});

test("phase: a new peer or new keys reload (wg syncconf); an [Interface] change restarts", (t) => {
  const dir = tempDir(t);
  const ctx = stateContext(dir);
  const pc = pcOf(ctx);
  const [vps, fw] = wireguard.hosts(pc) as [ReturnType<typeof wireguard.hosts>[number], ReturnType<typeof wireguard.hosts>[number]];
  const appliedVps = afterApply(pc, wireguard.plan(pc, vps, factsOf()), false);
  const appliedFw = afterApply(pc, wireguard.plan(pc, fw, factsOf()), false);

  addWireguardPeer({ path: dir }, "alice", (peers) => nextPeerAddress(ctx, peers));
  const withPeer = pcOf(stateContext(dir));
  const peerPlan = wireguard.plan(withPeer, vps, appliedVps);
  assert.deepEqual(peerPlan.map((c) => c.title), ["update /etc/wireguard/wg0.conf", "reload (configuration changed) wg-quick@wg0.service"]);
  assert.match(peerPlan[1]!.notes.join(" "), /wg syncconf/);
  assert.match(peerPlan[1]!.commands.map((x) => x.display).join(" "), /systemctl reload-or-restart wg-quick@wg0\.service/);
  assert.match(peerPlan[0]!.diff!, /\+# admin peer alice/);
  assert.deepEqual(wireguard.plan(withPeer, fw, appliedFw).map((c) => c.title), [], "the LAN peer is untouched by an admin peer");

  // rotation: keys change, wg-quick's part does not, so still a reload; old keys masked in the diff
  const oldConf = appliedFw.files.get(wgConfPath("wg0"))!.content;
  rotateSecrets({ path: dir }, requiredSecrets(ctx.spec).filter((s) => s.name.startsWith("wireguard")));
  const rotated = pcOf(stateContext(dir));
  const rot = wireguard.plan(rotated, fw, appliedFw);
  assert.deepEqual(rot.map((c) => c.title), ["update /etc/wireguard/wg0.conf", "reload (configuration changed) wg-quick@wg0.service"]);
  const oldKey = /PrivateKey = (\S+)/.exec(oldConf)![1]!;
  assert.equal(everyCommandText(rot).includes(oldKey), false, "the previous key is masked too");
  assert.deepEqual(rotated.render.secrets.leaksInto(everyCommandText(rot)), []);
  assert.match(rot[0]!.diff!, /-PrivateKey = <secret:previous key>\n\+PrivateKey = <secret:wireguard-key\/firewall1>/);

  // MTU is wg-quick's: restart, with a risk note; the mark asks for a restart until one ran
  const mtu = stateContext(dir, SEED_YAML.replace("mtu: 1420", "mtu: 1380"));
  const restart = wireguard.plan(pcOf(mtu), fw, appliedFw);
  assert.deepEqual(restart.map((c) => c.title), ["update /etc/wireguard/wg0.conf", "restart (configuration changed) wg-quick@wg0.service"]);
  assert.match(restart[1]!.notes.join(" "), /restarts the tunnel on firewall1/);
  assert.match(restart[0]!.commands[0]!.shell, /echo restart > \/var\/lib\/fmc\/pending\/wg-quick@wg0\.service/);
  // the file was written but the run stopped before the restart: the next plan restarts
  const files = Object.fromEntries([...appliedFw.files].filter(([, f]) => f).map(([p, f]) => [p, f!.content]));
  const stopped = factsOf({
    files: { ...files, [wgConfPath("wg0")]: restart[0]!.file!.content, [pendingMarker("wg-quick@wg0.service")]: "restart\n" },
    packages: ["wireguard-tools", "nftables", "wireguard-go"],
    units: { "wg-quick@wg0.service": ["active", "enabled"] },
  });
  assert.deepEqual(wireguard.plan(pcOf(mtu), fw, stopped).map((c) => c.title), ["restart (configuration changed in an earlier run that did not finish) wg-quick@wg0.service"]);

  // a changed ruleset on the gateway is loaded under its revert and confirmed, not reloaded through the unit
  const ports = stateContext(dir, SEED_YAML.replace("  lanPeer: firewall1\n", "  lanPeer: firewall1\n  forwardPorts: [443]\n"));
  const nft = wireguard.plan(pcOf(ports), vps, appliedVps);
  assert.deepEqual(nft.map((c) => c.title).slice(0, 2), [`update ${GATEWAY_RULES}`, "load the gateway's rules (table inet fmc_gateway), confirmed over a new SSH connection"]);
  assert.ok(nft[1]!.confirm);
  assert.ok(appliedVps.files.get(unitPath("fmc-gateway-nftables.service")));
});

test("fmc wireguard add-peer: prints the client config once, stores the peer, refuses a second one of that name", (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "cluster.yaml"), SEED_YAML);
  const spec = join(dir, "cluster.yaml");
  const run = (args: string[]) =>
    spawnSync(process.execPath, ["--import", "tsx", "-e", `import(${JSON.stringify(join(ROOT, "src/cli/main.ts"))}).then((m) => m.main(${JSON.stringify(args)}))`], { cwd: ROOT, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  const help = run(["wireguard", "add-peer", "--help"]);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /remote-admin peer/);
  assert.match(help.stdout, /--qr/);
  const r = run(["wireguard", "add-peer", "alice", "--qr", "--no-apply", "-f", spec]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^# fmc WireGuard peer alice/);
  assert.match(r.stdout, /Address = 10\.17\.0\.129\/32/);
  assert.match(r.stdout, /█/, "a QR code follows");
  const key = /PrivateKey = (\S+)/.exec(r.stdout)![1]!;
  assert.equal(r.stderr.includes(key), false, "the key goes to stdout only");
  const stored = JSON.parse(readFileSync(join(dir, ".fmc", "secrets.json"), "utf8")).secrets["wgpeer-key/alice"].value;
  assert.equal(stored, key);
  const dup = run(["wireguard", "add-peer", "alice", "--no-apply", "-f", spec]);
  assert.equal(dup.status, 1);
  assert.match(dup.stderr, /error\[PEER_EXISTS\] WireGuard peer alice exists already/);
  assert.equal(dup.stdout, "");
});

test("the terminal QR code decodes to the client config (zbarimg)", (t) => {
  if (spawnSync("sh", ["-c", "command -v zbarimg"]).status !== 0) return t.skip("zbarimg (Debian: zbar-tools) is not installed");
  const dir = tempDir(t);
  const ctx = stateContext(dir);
  const { peer } = addWireguardPeer({ path: dir }, "alice", (peers) => nextPeerAddress(ctx, peers));
  const again = stateContext(dir);
  const config = peerClientConfig(again, tunnelOf(again)!, peer);
  // half blocks back to pixels (a drawn half is a light module), scaled up, as a PGM image
  const half: Record<string, [number, number]> = { "█": [1, 1], "▀": [1, 0], "▄": [0, 1], " ": [0, 0] };
  const rows = terminalQr(config).split("\n").filter((l) => l.length).flatMap((l) => [[...l].map((c) => half[c]![0]), [...l].map((c) => half[c]![1])]);
  const S = 6;
  const w = rows[0]!.length * S;
  const pixels = Buffer.from(rows.flatMap((r) => Array.from({ length: S }, () => r.flatMap((v) => Array<number>(S).fill(v ? 255 : 0)))).flat());
  const image = join(dir, "qr.pgm");
  writeFileSync(image, Buffer.concat([Buffer.from(`P5 ${w} ${rows.length * S} 255\n`), pixels]));
  const r = spawnSync("zbarimg", ["-q", "--raw", image], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trimEnd(), config.trimEnd());
});

test("the gateway's SSH: from anywhere until wireguard.sshFrom is set, then from those sources and the tunnel only; nft -c accepts each", (t) => {
  const dir = tempDir(t);
  const vpsOf = (extra: string, yaml = SEED_YAML) => {
    const ctx = contextFor(yaml.replace("persistentKeepalive: 25", `persistentKeepalive: 25\n  ${extra}`));
    const text = vpsNftables(ctx, tunnelOf(ctx)!);
    const r = check("nft -c -f %s", text, dir);
    assert.equal(r.status, 0, r.out);
    return text.split("\n").map((l) => l.trim()).filter((l) => /tcp dport 22 /.test(l));
  };
  // unset: today's reachability, so a new VPS is reached at its public address
  assert.deepEqual(vpsOf(""), ["tcp dport 22 accept"]);
  assert.deepEqual(vpsOf("sshFrom: [198.51.100.7/32, 192.0.2.0/24]"), ['iifname "wg0" tcp dport 22 accept', 'iifname "eth0" ip saddr { 198.51.100.7/32, 192.0.2.0/24 } tcp dport 22 accept']);
  // [] (validate refuses it while fmc reaches vps1 at its public address): the tunnel only
  assert.deepEqual(vpsOf("sshFrom: []", SEED_YAML.replace("ssh: { user: root, host: 203.0.113.10 }", "ssh: { user: root }")), ['iifname "wg0" tcp dport 22 accept']);
  // a gateway on another SSH port keeps it
  const ported = contextFor(SEED_YAML.replace("ssh: { user: root, host: 203.0.113.10 }", "ssh: { user: root, host: 203.0.113.10, port: 2200 }").replace("persistentKeepalive: 25", "persistentKeepalive: 25\n  sshFrom: [198.51.100.7/32]"));
  assert.match(vpsNftables(ported, tunnelOf(ported)!), /iifname "eth0" ip saddr \{ 198\.51\.100\.7\/32 \} tcp dport 2200 accept/);
});
