// vps1's nftables table (fmc_gateway: input default drop, SSH on the spec's port only) goes
// live as firewall1's does: armed first, loaded, confirmed over a brand-new SSH connection,
// or reverted by the host itself. From the phase's plan (recorded facts), through the engine
// with recording transports, and on a real kernel in a throwaway namespace.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { contextFor, inNetns, requireTool, tempDir } from "../helpers.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { RecordingTransport, type Transport } from "../../src/hosts/transport.js";
import type { Command } from "../../src/hosts/command.js";
import { apply, plan, REVERT_MARGIN_MS, type Reconnect } from "../../src/engine/run.js";
import { wireguard } from "../../src/phases/wireguard.js";
import type { Change } from "../../src/ops/change.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import type { ClusterContext } from "../../src/state/context.js";
import { FmcError } from "../../src/errors.js";

/** vps1's SSH on another port than the spec's default: the case that locks people out. */
const PORTED = SEED_YAML.replace("ssh: { user: root, host: 203.0.113.10 }", "ssh: { user: root, host: 203.0.113.10, port: 2200 }");
const ctx = contextFor(PORTED);
const pcOf = (render: ClusterContext, confirmTimeoutS?: number): PhaseContext => ({ render, mask: (t) => render.secrets.mask(t), loginUser: () => "root", confirmTimeoutS });
const vps = ctx.topo.host("vps1");

const b64 = (s: string) => Buffer.from(s).toString("base64");
/** vps1 as the fact script prints it: fresh (nothing installed), or with the given files and guards. */
function factsText(o: { files?: Record<string, string>; inSync?: boolean; unit?: [string, string] } = {}): string {
  return [
    "@os", "ID=debian", 'VERSION_ID="12"',
    "@hostname", "vps1",
    "@addr", "eth0 203.0.113.10/24",
    "@swap",
    "@units", "Id=fmc-gateway-nftables.service", `ActiveState=${o.unit?.[0] ?? "inactive"}`, `UnitFileState=${o.unit?.[1] ?? "not-found"}`, "",
    "@packages", "wireguard-tools install ok installed", "nftables install ok installed",
    "@sysctl",
    "@files", ...Object.entries(o.files ?? {}).map(([p, c]) => `${p} 644 root root ${b64(c)}`),
    "@dirs", "@users",
    "@guard", "wireguard-kernel-module 0", `gateway-nft-in-sync ${o.inSync ? 0 : 1}`,
    "@end",
  ].join("\n") + "\n";
}
const factsOf = (o?: Parameters<typeof factsText>[0]): HostFacts => parseFacts("vps1", factsText(o));

/** The change that makes the gateway's table live: the one that loads `table inet fmc_gateway`. */
const loads = (c: Change) => c.commands.some((x) => /\bnft -f\b/.test(x.shell) || /systemctl .*fmc-gateway-nftables/.test(x.shell));

test("vps1's input-drop table is loaded only under an armed revert, and kept only after a new SSH connection confirms it", () => {
  const changes = wireguard.plan(pcOf(ctx), vps, factsOf());
  const live = changes.filter(loads);
  assert.ok(live.length > 0, changes.map((c) => c.title).join("; "));
  // the first change that puts the table in the kernel arms the revert first and is confirmed
  const first = live[0]!;
  assert.ok(first.confirm, `${first.title}: goes live without a confirmation`);
  assert.match(first.commands[0]!.shell, /systemd-run --quiet --unit=\S+ --on-active=60s /, "armed before anything is loaded");
  assert.match(first.commands[0]!.shell, /nft list table inet fmc_gateway/, "the revert saves the gateway's table");
  assert.match(first.commands[1]!.shell, /nft -f /);
  assert.equal(first.confirm!.timeoutS, 60);
  assert.match(first.confirm!.describe, /fmc_gateway/);
  assert.match(first.confirm!.hint ?? "", /tcp 2200/, "the hint names the SSH port the rules keep open");
  assert.ok(first.confirm!.reverted, "the engine can check that the revert ran");
  // the rules it loads are the rendered ones, checked by nft -c, written before it
  const rules = changes.find((c) => c.file?.validate === "nft -c -f %s" && first.commands[1]!.shell.includes(c.file.path));
  assert.ok(rules, "the loaded file is the one the plan writes and checks");
  assert.match(rules.file!.content, /tcp dport 2200 accept/);
  assert.ok(changes.indexOf(rules) < changes.indexOf(first));
  // the unit that loads the table at boot reads the copy only a confirmation writes
  const boot = /mv -f (\S+)\.fmc-tmp \1/.exec(first.confirm!.cancel.shell)?.[1];
  assert.ok(boot && boot !== rules.file!.path, `the confirmation keeps the rules for boot: ${first.confirm!.cancel.shell}`);
  const unit = changes.find((c) => c.file?.path.endsWith("fmc-gateway-nftables.service"))!;
  assert.match(unit.file!.content, new RegExp(`ExecStart=/usr/sbin/nft -f ${boot}\\n`));
  // a reload or restart of that unit (it loads the boot copy) never comes before the confirmed load
  for (const c of live.slice(1)) assert.ok(changes.indexOf(c) > changes.indexOf(first), c.title);
  // --confirm-timeout reaches the gateway too
  const slow = wireguard.plan(pcOf(ctx, 90), vps, factsOf()).find((c) => c.confirm)!;
  assert.equal(slow.confirm!.timeoutS, 90);
  assert.match(slow.commands[0]!.shell, /--on-active=90s /);
});

test("the gateway's table: nothing to do when the kernel holds the confirmed rendered table; reloaded under its revert when it drifted", () => {
  const first = wireguard.plan(pcOf(ctx), vps, factsOf());
  const files = Object.fromEntries(first.filter((c) => c.file).map((c) => [c.file!.path, c.file!.content]));
  const synced = wireguard.plan(pcOf(ctx), vps, factsOf({ files, inSync: true, unit: ["active", "enabled"] }));
  assert.deepEqual(synced.filter(loads).map((c) => c.title), []);
  const drifted = wireguard.plan(pcOf(ctx), vps, factsOf({ files, inSync: false, unit: ["active", "enabled"] })).filter(loads);
  assert.equal(drifted.length, 1);
  assert.ok(drifted[0]!.confirm);
  assert.ok(drifted[0]!.notes.some((n) => /not the one last confirmed/.test(n)), drifted[0]!.notes.join("; "));
});

// --- through the engine --------------------------------------------------------------

async function planned(main: RecordingTransport) {
  const transports = new Map<string, Transport>([["vps1", main]]);
  return { p: await plan(pcOf(ctx), [wireguard], transports, { concurrency: 1 }), transports };
}
const factsResponder = (c: Command) => (c.display === "read facts" ? { code: 0, stdout: factsText(), stderr: "" } : undefined);

test("engine: the gateway's load is confirmed on a brand-new connection, and the tunnel comes after it", async () => {
  const main = new RecordingTransport("vps1", [factsResponder]);
  const { p, transports } = await planned(main);
  const opened: RecordingTransport[] = [];
  const reconnect: Reconnect = { open: async (h) => { const t = new RecordingTransport(h); opened.push(t); return t; }, where: () => "203.0.113.10:2200" };
  await apply(p, transports, { concurrency: 1, reconnect, sleep: async () => undefined });
  assert.equal(opened.length, 1, "one new connection confirms");
  const load = p.changes.find((c) => c.confirm)!;
  assert.deepEqual(opened[0]!.log.map((c) => c.shell), [load.confirm!.cancel.shell]);
  const ran = main.log.map((c) => c.display);
  assert.ok(ran.indexOf(load.commands[1]!.display) > ran.indexOf(load.commands[0]!.display), "armed, then loaded");
  assert.ok(ran.some((d) => /start wg-quick@wg0\.service/.test(d)), "the tunnel starts after the confirmation");
});

test("engine: a failed confirmation on vps1 waits for the host's revert, checks it, and stops with REVERTED before the tunnel", async () => {
  const main = new RecordingTransport("vps1", [factsResponder]);
  const { p, transports } = await planned(main);
  const attempts: string[] = [];
  const proof = new RecordingTransport("vps1");
  const reconnect: Reconnect = {
    open: async (h) => {
      attempts.push(h);
      if (attempts.length === 1) throw new FmcError("SSH_CONNECT", "vps1: cannot connect to root@203.0.113.10: connect ECONNREFUSED 203.0.113.10:2200");
      return proof;
    },
    where: () => "203.0.113.10:2200",
  };
  const slept: number[] = [];
  await assert.rejects(apply(p, transports, { concurrency: 1, reconnect, sleep: async (ms) => void slept.push(ms) }), (e: FmcError) => {
    assert.equal(e.code, "REVERTED");
    assert.match(e.message, /a new SSH connection to vps1 \(203\.0\.113\.10:2200\) failed after the new gateway rules \(nftables table inet fmc_gateway\) were applied: vps1: cannot connect .* — the previous gateway rules \(nftables table inet fmc_gateway\) were restored after 60 s/);
    assert.match(e.hint ?? "", /tcp 2200/);
    return true;
  });
  assert.equal(slept.length, 1);
  assert.ok(slept[0]! > 60_000 && slept[0]! <= 60_000 + REVERT_MARGIN_MS);
  const load = p.changes.find((c) => c.confirm)!;
  assert.deepEqual(proof.log.map((c) => c.shell), [load.confirm!.reverted!.shell], "the revert is checked over another new connection");
  assert.ok(!main.log.some((c) => /wg-quick@wg0/.test(c.display)), "nothing after the reverted load ran");
});

// --- on a real kernel ----------------------------------------------------------------

test("the gateway's arm, load, confirm and revert on a real kernel (no systemd: the detached sleep), in throwaway namespaces", (t) => {
  requireTool("nft");
  const dir = tempDir(t);
  const changes = wireguard.plan(pcOf(ctx, 1), vps, factsOf());
  const load = changes.find((c) => c.confirm)!;
  const rules = changes.find((c) => c.file && load.commands[1]!.shell.includes(c.file.path))!.file!;
  const files: Record<string, string> = { arm: load.commands[0]!.shell, load: load.commands[1]!.shell, cancel: load.confirm!.cancel.shell, reverted: load.confirm!.reverted!.shell, rules: rules.content };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const scenario = `
set -u
D=${dir}
mount -t tmpfs none /run && mount -t tmpfs none /var/lib && mount -t tmpfs none /etc || exit 9
mkdir -p "$(dirname ${rules.path})" && cp $D/rules ${rules.path}
# not confirmed: the table goes away again (there was none), so SSH is open as before
bash $D/arm && bash $D/load || exit 10
nft list table inet fmc_gateway | grep -q 'tcp dport 2200 accept' || exit 11
sleep 2.5
bash $D/reverted || exit 12
nft list tables | grep -q fmc_gateway && exit 13
# confirmed: the rules stay, and are kept for boot
bash $D/arm && bash $D/load && bash $D/cancel || exit 14
sleep 2.5
nft list table inet fmc_gateway >/dev/null || exit 15
bash $D/reverted && exit 16
exit 0
`;
  writeFileSync(join(dir, "scenario"), scenario);
  inNetns((ns) => {
    const r = spawnSync("ip", ["netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "bash", join(dir, "scenario")], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, `scenario step ${r.status}: ${r.stderr}`);
  });
});
