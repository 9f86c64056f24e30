// wireguard: the site tunnel between the gateway (the VPS) and the LAN peer (the
// firewall), from the renderers in render/wireguard.ts, run by wg-quick@<iface>.service.
// Kernel WireGuard when the host has the module; otherwise wireguard-go, which wg-quick
// starts by itself when `ip link add type wireguard` fails (see add_if in wg-quick).
// A changed config reaches the running tunnel with `systemctl reload` (the unit's
// ExecReload is `wg syncconf`: keys and peers change, the interface stays up); only a
// change of wg-quick's own [Interface] settings (Address, MTU, Table, hooks) restarts it.
// Keys reach the host on stdin inside the config file (0600), never on a command line.
// The gateway's nftables table (input default drop, SSH on one port) could cut fmc off
// the gateway, so it goes live as firewall1's does (src/ops/revert.ts): written and checked,
// loaded under an armed revert, confirmed over a brand-new SSH connection; only then is it
// copied to the file its unit loads at boot, before the tunnel.
import {
  adminSubnetOf,
  GATEWAY_NFT,
  GATEWAY_NFT_UNIT,
  gatewayNftUnit,
  tunnelNftables,
  tunnelOf,
  TUNNEL_NFT,
  vpsNftables,
  wgConfig,
  wgConfPath,
  wgUnit,
} from "../render/wireguard.js";
import { FAMILIES } from "../hosts/os.js";
import { cmd, script } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { HostFacts } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { packageChange } from "../ops/package.js";
import { PENDING_DIR, pendingMarker, serviceChange } from "../ops/service.js";
import { unitPath } from "../ops/unit.js";
import type { Change } from "../ops/change.js";
import { confirmedLoad, DEFAULT_CONFIRM_TIMEOUT_S, nftRevert } from "../ops/revert.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

/** Guard: exit 0 when the kernel has WireGuard (loaded, or loadable). */
export const KERNEL_GUARD = "wireguard-kernel-module";
const KERNEL_TEST = "test -d /sys/module/wireguard || modprobe -n -q wireguard";

/** The gateway's rules as rendered: written, checked by nft -c, loaded and confirmed. */
export const GATEWAY_RULES = "/etc/fmc/fmc_gateway.rendered.nft";
/** Guard: exit 0 when the gateway's table is the confirmed one and that is the rendered one. */
export const GATEWAY_IN_SYNC = "gateway-nft-in-sync";
/**
 * The gateway table's timed revert; a confirmation copies the rules to GATEWAY_NFT, the file
 * fmc-gateway-nftables.service loads at boot (and on a restart).
 */
const GATEWAY_REVERT = nftRevert({ table: "inet fmc_gateway", rules: GATEWAY_RULES, bootRules: GATEWAY_NFT, stateDir: "/var/lib/fmc/gateway", revertUnit: "fmc-gateway-revert" });

/** wg-quick's own [Interface] keys: changing one needs wg-quick down/up, the rest `wg syncconf` applies. */
const WG_QUICK_KEYS = new Set(["address", "mtu", "dns", "table", "preup", "postup", "predown", "postdown", "saveconfig"]);

/** The lines of a wg-quick file that `wg syncconf` cannot apply, as wg-quick reads them. */
export function wgQuickPart(text: string): string[] {
  const out: string[] = [];
  let inInterface = false;
  for (const line of text.split("\n")) {
    const stripped = line.split("#")[0]!;
    const eq = stripped.indexOf("=");
    const key = (eq < 0 ? stripped : stripped.slice(0, eq)).trim().toLowerCase();
    if (key.startsWith("[")) inInterface = key === "[interface]";
    else if (inInterface && eq >= 0 && WG_QUICK_KEYS.has(key)) out.push(`${key}=${stripped.slice(eq + 1).trim()}`);
  }
  return out;
}

/**
 * The candidate config checked by the real parsers: wg-quick's (on a copy named as the
 * interface, as it insists), then wg's on what wg-quick hands to wg. `wg setconf` parses
 * the whole file before it looks for the interface, and "fmc/check" can never name one,
 * so a valid file ends in "Unable to modify interface" and nothing is configured.
 */
export function wgCheck(iface: string): string {
  const copy = `"$d"/${quote(`${iface}.conf`)}`;
  const body = [
    "set -e",
    "d=$(mktemp -d)",
    `trap 'rm -rf "$d"' EXIT`,
    `cp "$1" ${copy}`,
    `wg-quick strip ${copy} > "$d"/stripped`,
    // a parse error is reported before wg looks for the interface, which never exists
    `out=$(LC_ALL=C wg setconf fmc/check "$d"/stripped 2>&1) && exit 1`,
    `case "$out" in "Unable to modify interface:"*|*"No such device"*|*"Protocol not supported"*) exit 0 ;; *) echo "$out" >&2; exit 1 ;; esac`,
  ].join("\n");
  return `bash -c ${quote(body)} wg-check %s`;
}

/** Keys in a config read from a host that the store no longer has (after a rotation): masked all the same. */
const maskWgKeys = (text: string) => text.replace(/^(\s*(?:PrivateKey|PresharedKey)\s*=\s*)[A-Za-z0-9+/]{43}=/gim, "$1<secret:previous key>");

/** Marks a pending reload of `unit`, or a pending restart; a restart once marked stays marked until it ran. */
function marking(change: Change, unit: string, restart: boolean): Change {
  const m = quote(pendingMarker(unit));
  const mark = restart
    ? script(`mkdir -p ${PENDING_DIR} && echo restart > ${m}`, `note that ${unit} must restart`)
    : script(`mkdir -p ${PENDING_DIR} && touch ${m}`, `note that ${unit} must reload`);
  return { ...change, commands: [mark, ...change.commands] };
}

const pendingOf = (facts: HostFacts, unit: string) => {
  const f = facts.files.get(pendingMarker(unit));
  return f ? (f.content.includes("restart") ? "restart" : "reload") : undefined;
};

export const wireguard: Phase = {
  name: "wireguard",
  description: "WireGuard site tunnel (gateway and LAN peer), the gateway's nftables",
  hosts(pc) {
    const t = tunnelOf(pc.render);
    return t ? [t.gateway, t.lanPeer] : [];
  },
  facts(pc, host) {
    const t = tunnelOf(pc.render)!;
    const iface = pc.render.spec.wireguard!.interface;
    const unit = wgUnit(iface);
    const gw = host.name === t.gateway.name;
    return {
      files: new Set([wgConfPath(iface), pendingMarker(unit), ...(gw ? [GATEWAY_RULES, unitPath(GATEWAY_NFT_UNIT), pendingMarker(GATEWAY_NFT_UNIT)] : [TUNNEL_NFT])]),
      units: new Set([unit, ...(gw ? [GATEWAY_NFT_UNIT] : [])]),
      packages: new Set(["wireguard-tools", "wireguard-go", "nftables"]),
      guards: new Map([[KERNEL_GUARD, KERNEL_TEST], ...(gw ? ([[GATEWAY_IN_SYNC, GATEWAY_REVERT.inSyncTest]] as const) : [])]),
    };
  },
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const ctx = pc.render;
    const t = tunnelOf(ctx)!;
    const wg = ctx.spec.wireguard!;
    const gw = host.name === t.gateway.name;
    const c = { host: host.name, phase: "wireguard", mask: (text: string) => maskWgKeys(pc.mask(text)) };
    const unit = wgUnit(wg.interface);
    const out: Change[] = [];

    const kernel = facts.guards.get(KERNEL_GUARD) === 0;
    const wanted = ["wireguard-tools", "nftables", ...(kernel ? [] : ["wireguard-go"])];
    const pkg = packageChange(facts, FAMILIES[facts.os.family], wanted, c);
    if (pkg) {
      const userspace = !kernel && !facts.packages.get("wireguard-go");
      out.push({
        ...pkg,
        title: `${pkg.title}${userspace ? " (no WireGuard kernel module: wg-quick runs the userspace wireguard-go)" : ""}`,
        notes: [...pkg.notes, ...(userspace ? ["wireguard-go is slower than the kernel module; load the module (modprobe wireguard) and fmc uses it from the next start"] : [])],
      });
    }

    if (gw) {
      // the gateway's filter first: the tunnel's port is open and the forwards exist before it comes up
      const ssh = t.gateway.ssh?.port ?? ctx.spec.ssh.port;
      const timeoutS = pc.confirmTimeoutS ?? DEFAULT_CONFIRM_TIMEOUT_S;
      const table = "table inet fmc_gateway";
      const unitFile = fileChange(facts, { path: unitPath(GATEWAY_NFT_UNIT), content: gatewayNftUnit(ctx) }, c);
      const nft = fileChange(facts, { path: GATEWAY_RULES, content: vpsNftables(ctx, t), validate: "nft -c -f %s" }, c);
      if (unitFile) out.push(marking({ ...unitFile, commands: [...unitFile.commands, cmd("systemctl", "daemon-reload")] }, GATEWAY_NFT_UNIT, true));
      if (nft) out.push(nft);
      if (nft || facts.guards.get(GATEWAY_IN_SYNC) !== 0) {
        const load = confirmedLoad(GATEWAY_REVERT, {
          host: host.name,
          phase: "wireguard",
          timeoutS,
          title: `load the gateway's rules (${table}), confirmed over a new SSH connection`,
          describe: `gateway rules (nftables ${table})`,
          fileChanged: !!nft,
          hint: `the new rules would have cut fmc off ${host.name}: they let SSH in on tcp ${ssh} only${ctx.spec.wireguard!.sshFrom ? ` and on its public side only from wireguard.sshFrom` : ""}; check that sshd listens there (ssh.port, or the host's ssh.port) and that fmc connects from an allowed address, then run fmc apply again`,
        });
        out.push({ ...load, notes: [...load.notes, `${table}: input is default drop on ${host.name}; SSH (tcp ${ssh}) and WireGuard (udp ${wg.port}) stay open`] });
      }
      // the unit loads the confirmed copy at boot; restarted only when the unit itself changed
      const pending = pendingOf(facts, GATEWAY_NFT_UNIT);
      const restart = !!unitFile || pending === "restart";
      const s = serviceChange(facts, { unit: GATEWAY_NFT_UNIT, enabled: true, running: true, reload: !!unitFile, pending: !!pending, reloadBy: restart ? "restart" : "reload" }, c);
      if (s) out.push(s);
    } else {
      // loaded by wg-quick's PostUp; a change reaches a running tunnel at once
      const nft = fileChange(facts, { path: TUNNEL_NFT, content: tunnelNftables(ctx), validate: "nft -c -f %s" }, c);
      if (nft) {
        const load = script(`if systemctl is-active -q ${quote(unit)}; then nft -f ${quote(TUNNEL_NFT)}; fi`, `nft -f ${TUNNEL_NFT} if ${unit} is up`);
        out.push({ ...nft, commands: [...nft.commands, load] });
      }
    }

    const path = wgConfPath(wg.interface);
    const desired = wgConfig(ctx, t, gw ? "gateway" : "lan");
    const current = facts.files.get(path);
    const conf = fileChange(facts, { path, content: desired, mode: 0o600, validate: wgCheck(wg.interface), secret: true }, c);
    const interfaceChanged = !!current && wgQuickPart(current.content).join("\n") !== wgQuickPart(desired).join("\n");
    if (conf) out.push(marking(conf, unit, interfaceChanged));
    const pending = pendingOf(facts, unit);
    const restart = interfaceChanged || pending === "restart";
    const admin = gw && ctx.secrets.wireguardPeers().length ? ` and the admin peers (${adminSubnetOf(ctx, t)})` : "";
    const s = serviceChange(
      facts,
      {
        unit,
        enabled: true,
        running: true,
        reload: !!conf,
        pending: !!pending,
        reloadBy: restart ? "restart" : "reload",
        riskIfTouched: restart
          ? [`restarts the tunnel on ${host.name} (wg-quick's [Interface] settings changed): traffic through it${admin} stops until the peers shake hands again`]
          : [`applied with wg syncconf (the unit's reload): keys and peers change, ${wg.interface} stays up`],
      },
      c,
    );
    if (s) out.push(s);
    return out;
  },
};
