// wireguard: the site tunnel between the gateway (the VPS) and the LAN peer (the
// firewall), from the renderers in render/wireguard.ts, run by wg-quick@<iface>.service.
// Kernel WireGuard when the host has the module; otherwise wireguard-go, which wg-quick
// starts by itself when `ip link add type wireguard` fails (see add_if in wg-quick).
// A changed config reaches the running tunnel with `systemctl reload` (the unit's
// ExecReload is `wg syncconf`: keys and peers change, the interface stays up); only a
// change of wg-quick's own [Interface] settings (Address, MTU, Table, hooks) restarts it.
// Keys reach the host on stdin inside the config file (0600), never on a command line.
// The gateway's nftables table is loaded by its own unit, before the tunnel.
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
import { cmd, quote, script } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { packageChange } from "../ops/package.js";
import { PENDING_DIR, pendingMarker, serviceChange } from "../ops/service.js";
import { unitPath } from "../ops/unit.js";
import type { Change } from "../ops/change.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

/** Guard: exit 0 when the kernel has WireGuard (loaded, or loadable). */
export const KERNEL_GUARD = "wireguard-kernel-module";
const KERNEL_TEST = "test -d /sys/module/wireguard || modprobe -n -q wireguard";

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
      files: new Set([wgConfPath(iface), pendingMarker(unit), ...(gw ? [GATEWAY_NFT, unitPath(GATEWAY_NFT_UNIT), pendingMarker(GATEWAY_NFT_UNIT)] : [TUNNEL_NFT])]),
      units: new Set([unit, ...(gw ? [GATEWAY_NFT_UNIT] : [])]),
      packages: new Set(["wireguard-tools", "wireguard-go", "nftables"]),
      guards: new Map([[KERNEL_GUARD, KERNEL_TEST]]),
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
      const unitFile = fileChange(facts, { path: unitPath(GATEWAY_NFT_UNIT), content: gatewayNftUnit(ctx) }, c);
      const nft = fileChange(facts, { path: GATEWAY_NFT, content: vpsNftables(ctx, t), validate: "nft -c -f %s" }, c);
      if (unitFile) out.push(marking({ ...unitFile, commands: [...unitFile.commands, cmd("systemctl", "daemon-reload")] }, GATEWAY_NFT_UNIT, true));
      if (nft) out.push(marking(nft, GATEWAY_NFT_UNIT, false));
      const pending = pendingOf(facts, GATEWAY_NFT_UNIT);
      const restart = !!unitFile || pending === "restart";
      const s = serviceChange(facts, { unit: GATEWAY_NFT_UNIT, enabled: true, running: true, reload: !!unitFile || !!nft, pending: !!pending, reloadBy: restart ? "restart" : "reload" }, c);
      if (s) out.push({ ...s, notes: [...s.notes, `table inet fmc_gateway: input is default drop on ${host.name}; SSH (tcp ${ssh}) and WireGuard (udp ${wg.port}) stay open`] });
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
