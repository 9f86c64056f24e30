// fmc wireguard add-peer NAME [--qr] | rotate: remote-admin peers of the gateway, and new
// keys for the site tunnel. Both store their secrets first, then reach the hosts through
// the same plan and apply as `fmc apply --phase wireguard`, so a run that could not reach
// a host is finished by the next apply.
import { defineCommand } from "citty";
import qrcode from "qrcode-generator";
import { context } from "../project.js";
import { FmcError } from "../errors.js";
import { openSession, type Session } from "../engine/session.js";
import { apply as applyPlan, plan as makePlan, type Event, type Plan } from "../engine/run.js";
import type { HostsLock } from "../engine/hosts-lock.js";
import { addWireguardPeer, loadOrCreateSecrets, requiredSecrets, rotateSecrets, wireguardKeyName, wireguardPublicKey, type SecretSpec } from "../state/secrets.js";
import { nextPeerAddress, peerClientConfig, tunnelOf, wgConfPath, wgUnit } from "../render/wireguard.js";
import { cmd } from "../hosts/command.js";
import type { PhaseContext } from "../phases/phase.js";
import { bold, dim, lockReport, n, red, specFileOf, yellow } from "./ui.js";
import { sessionArgs, sessionOptions, type SessionArgs } from "./session-args.js";

/** The shared options minus the ones that make no sense here (the phase is wireguard). */
const { phase: _phase, concurrency: _concurrency, ...connectArgs } = sessionArgs;

function open(a: SessionArgs): Promise<Session> {
  return openSession({ ...sessionOptions(a), phases: ["wireguard"] });
}

const progress = (e: Event) => {
  if (e.type === "change") process.stderr.write(`[${e.change.host}] ${e.change.phase}: ${e.change.title}\n`);
  if (e.type === "done") process.stderr.write(dim(`[${e.change.host}] ${e.change.phase}: done in ${Math.round(e.ms)} ms\n`));
};

function requireReachable(s: Session, hosts: readonly string[], what: string): void {
  const missing = hosts.filter((h) => !s.transports.has(h));
  if (missing.length) {
    const why = missing.map((h) => `${h}: ${s.unreachable.get(h) ?? "not in the inventory"}`).join("; ");
    throw new FmcError("UNREACHABLE", `${what}: ${why}`, "bring the host back, then: fmc apply --phase wireguard");
  }
}

function onlyHosts(p: Plan, keep: (c: Plan["changes"][number]) => boolean): Plan {
  return { ...p, changes: p.changes.filter(keep) };
}

function printChanges(p: Plan): void {
  for (const c of p.changes) {
    process.stderr.write(`  ${yellow("~")} ${bold(c.host)} ${c.title}\n`);
    for (const note of c.notes) process.stderr.write(`      ${red("!")} ${note}\n`);
  }
}

/** A QR code for a terminal: two modules per character cell, light modules drawn. */
export function terminalQr(text: string): string {
  const qr = qrcode(0, "L");
  qr.addData(text, "Byte");
  qr.make();
  return qr.createASCII(1, 2) + "\n";
}

const addPeer = defineCommand({
  meta: {
    name: "add-peer",
    description:
      "Add a remote-admin peer of the gateway: allocates its address in wireguard.adminSubnet, generates its keys (kept in the state directory, 0600), prints its client config once on stdout (--qr: also as a QR code for the WireGuard app), then applies it on the gateway with wg syncconf, without dropping the site tunnel",
  },
  args: {
    name: { type: "positional", required: true, valueHint: "NAME", description: "the peer's name: lower-case letters, digits and -, e.g. alice-laptop" },
    qr: { type: "boolean", description: "also print the client config as a terminal QR code", default: false },
    apply: { type: "boolean", description: "apply it on the gateway now (--no-apply: only store it; the next fmc apply does it)", default: true },
    file: connectArgs.file,
    state: connectArgs.state,
    identity: connectArgs.identity,
    "accept-new": connectArgs["accept-new"],
    jump: connectArgs.jump,
    timeout: connectArgs.timeout,
  },
  async run({ args }) {
    const { ctx, stateDir } = context({ file: specFileOf(args), stateDir: args.state });
    const t = tunnelOf(ctx);
    if (!t) throw new FmcError("NO_WIREGUARD", "this spec has no WireGuard tunnel (a wireguard section and a host with role gateway)", "fmc docs shows the wireguard section");
    const { peer, privateKey, presharedKey } = addWireguardPeer({ path: stateDir }, args.name, (peers) => nextPeerAddress(ctx, peers));
    const config = peerClientConfig(ctx, t, peer, privateKey, presharedKey);
    process.stderr.write(`${bold(`peer ${peer.name}`)}: ${peer.address}, public key ${peer.publicKey}; its config follows once on stdout (save it, e.g. as ${peer.name}.conf; fmc keeps the key in ${stateDir})\n`);
    process.stdout.write(config);
    // the app needs no comments, and a smaller code fits an 80-column terminal
    if (args.qr) process.stdout.write(`\n${terminalQr(config.split("\n").filter((l) => !l.startsWith("#")).join("\n"))}`);
    if (!args.apply) {
      process.stderr.write(dim(`stored; fmc apply --phase wireguard puts it on ${t.gateway.name}\n`));
      return;
    }
    const s = await open(args).catch((e: unknown) => {
      if (e instanceof FmcError) throw new FmcError(e.code, `peer ${peer.name} is stored, but it could not be applied: ${e.message}`, `${e.hint ? `${e.hint}; then ` : ""}fmc apply --phase wireguard`);
      throw e;
    });
    let lock: HostsLock | undefined;
    try {
      requireReachable(s, [t.gateway.name], `peer ${peer.name} is stored but ${t.gateway.name} could not be reached`);
      lock = await s.lockHosts("wireguard add-peer", lockReport);
      const p = onlyHosts(await makePlan(s.pc, s.phases, s.transports, { concurrency: 2 }), (c) => c.host === t.gateway.name);
      if (p.failedHosts.has(t.gateway.name)) throw new FmcError("FACTS", `peer ${peer.name} is stored but the facts of ${t.gateway.name} could not be read: ${p.failedHosts.get(t.gateway.name)}`, "fix it, then: fmc apply --phase wireguard");
      process.stderr.write(`${bold(t.gateway.name)}: ${n(p.changes.length, "change")}\n`);
      printChanges(p);
      await applyPlan(p, s.transports, { concurrency: 2, onEvent: progress, reconnect: s.reconnect });
      process.stderr.write(`peer ${peer.name} is live on ${t.gateway.name}\n`);
    } finally {
      await lock?.release();
      s.close();
    }
  },
});

/** Polls the gateway until the LAN peer's new key has a handshake; returns the ms it took, or undefined. */
async function waitForHandshake(s: Session, gateway: string, iface: string, lanPublicKey: string, limitMs: number): Promise<number | undefined> {
  const t = s.transports.get(gateway)!;
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    const r = await t.exec(cmd("wg", "show", iface, "latest-handshakes"), "wireguard: wait for the new handshake");
    const line = r.stdout.split("\n").find((l) => l.startsWith(`${lanPublicKey}\t`));
    if (line && Number(line.split("\t")[1]) > 0) return performance.now() - started;
    await new Promise((res) => setTimeout(res, 100));
  }
  return undefined;
}

const rotate = defineCommand({
  meta: {
    name: "rotate",
    description:
      "New key pairs and preshared key for the site tunnel (gateway and LAN peer): writes both configs, then applies them with wg syncconf, the gateway first and the LAN peer right after, so the LAN peer's next handshake brings the tunnel back by itself; prints what it did and how long the new handshake took. Admin peers keep their keys but need the gateway's new public key",
  },
  args: { ...connectArgs },
  async run({ args }) {
    const s = await open(args);
    let lock: HostsLock | undefined;
    try {
      const ctx = s.pc.render;
      const t = tunnelOf(ctx);
      if (!t) throw new FmcError("NO_WIREGUARD", "this spec has no WireGuard tunnel (a wireguard section and a host with role gateway)", "fmc docs shows the wireguard section");
      const iface = ctx.spec.wireguard!.interface;
      requireReachable(s, [t.gateway.name, t.lanPeer.name], "rotating needs both ends of the tunnel");
      lock = await s.lockHosts("wireguard rotate", lockReport);
      const before = await makePlan(s.pc, s.phases, s.transports, { concurrency: 2 });
      if (before.failedHosts.size) throw new FmcError("FACTS", [...before.failedHosts].map(([h, why]) => `${h}: ${why}`).join("\n"));
      if (before.changes.length) {
        printChanges(before);
        throw new FmcError("TUNNEL_NOT_APPLIED", `the tunnel does not match the spec yet (${n(before.changes.length, "change")} above); nothing was rotated`, "fmc apply --phase wireguard first, then rotate");
      }
      const tunnelKeys: readonly string[] = [wireguardKeyName(t.gateway.name), wireguardKeyName(t.lanPeer.name), "wireguard-psk"];
      const which: SecretSpec[] = requiredSecrets(ctx.spec).filter((x) => tunnelKeys.includes(x.name));
      rotateSecrets({ path: s.stateDir }, which);
      const secrets = loadOrCreateSecrets({ path: s.stateDir }, requiredSecrets(ctx.spec));
      const pc: PhaseContext = { ...s.pc, render: { ...ctx, secrets }, mask: (text) => secrets.mask(s.pc.mask(text)) };
      process.stderr.write(`rotated ${which.map((x) => x.name).join(", ")} in ${s.stateDir}/secrets.json\n`);
      const p = await makePlan(pc, s.phases, s.transports, { concurrency: 2 });
      const conf = wgConfPath(iface);
      const isWrite = (c: Plan["changes"][number]) => c.path === conf;
      // both configs first (nothing live changes), then the reloads back to back:
      // the gateway must know the LAN peer's new key before the LAN peer dials with it
      const t0 = performance.now();
      await applyPlan(onlyHosts(p, isWrite), s.transports, { concurrency: 2, onEvent: progress, reconnect: s.reconnect });
      const t1 = performance.now();
      await applyPlan(onlyHosts(p, (c) => !isWrite(c) && c.host === t.gateway.name), s.transports, { concurrency: 1, onEvent: progress, reconnect: s.reconnect });
      const t2 = performance.now();
      await applyPlan(onlyHosts(p, (c) => !isWrite(c) && c.host === t.lanPeer.name), s.transports, { concurrency: 1, onEvent: progress, reconnect: s.reconnect });
      const t3 = performance.now();
      const lanPublic = wireguardPublicKey(secrets.get(wireguardKeyName(t.lanPeer.name)));
      const shake = await waitForHandshake(s, t.gateway.name, iface, lanPublic, 30_000);
      const ms = (x: number) => `${Math.round(x)} ms`;
      process.stdout.write(
        [
          `Rotated the site tunnel's keys (${which.map((x) => x.name).join(", ")}).`,
          `  wrote ${conf} on ${t.gateway.name} and ${t.lanPeer.name}: ${ms(t1 - t0)}`,
          `  ${wgUnit(iface)} reloaded (wg syncconf) on ${t.gateway.name}: ${ms(t2 - t1)}, then on ${t.lanPeer.name}: ${ms(t3 - t2)}`,
          shake === undefined
            ? `  no handshake with the new keys within 30 s: check ${t.lanPeer.name} (wg show ${iface}) and fmc plan`
            : `  new handshake ${ms(shake)} after the LAN peer's reload (keys out of step for at most ${ms(t3 - t1 + shake)})`,
          `  ${t.gateway.name}'s new public key: ${secrets.wireguardPublic(t.gateway.name)}`,
          ...(secrets.wireguardPeers().length ? [`  admin peers (${secrets.wireguardPeers().map((x) => x.name).join(", ")}) need it as their [Peer] PublicKey`] : []),
          "",
        ].join("\n"),
      );
      if (shake === undefined) process.exitCode = 1;
    } finally {
      await lock?.release();
      s.close();
    }
  },
});

export const wireguard = defineCommand({
  meta: { name: "wireguard", description: "The WireGuard tunnel: add remote-admin peers, rotate the site tunnel's keys" },
  subCommands: { "add-peer": addPeer, rotate },
});
