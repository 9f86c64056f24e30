// firewall: the LAN firewall host as an nftables gateway, from the firewall renderer.
// The rules are checked with `nft -c`, then loaded as one transaction that replaces only
// fmc's own table. A rule set could cut fmc off the host, so every load is confirmed:
// before it, the host arms a revert (a systemd timer, or a detached sleep where systemd
// is not PID 1) that restores fmc's table as it was; after it, apply opens a brand-new
// SSH connection and runs the cancel command there (Change.confirm, src/engine/run.ts).
// Only confirmed rules are kept for the next boot (fmc-firewall.service loads them).
import { firewallNftables, FIREWALL_TABLE } from "../render/firewall.js";
import { HEADER, lines } from "../render/types.js";
import { FAMILIES } from "../hosts/os.js";
import { script, type Command } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { packageChange } from "../ops/package.js";
import { serviceChange } from "../ops/service.js";
import { sysctlChanges } from "../ops/sysctl.js";
import { unitChanges, unitFacts } from "../ops/unit.js";
import type { Change } from "../ops/change.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

/** The rules as rendered: written and checked on every change, loaded, confirmed. */
export const FIREWALL_RULES = "/etc/fmc/firewall.nft";
/** The last rules a new SSH connection got through: what the host loads at boot. */
const FIREWALL_BOOT_RULES = "/etc/nftables.d/fmc-firewall.nft";
const FIREWALL_UNIT = "fmc-firewall.service";
/** The revert's state: prev.nft (what it restores), armed, reverted, live.txt (the table as confirmed). */
const FIREWALL_STATE_DIR = "/var/lib/fmc/firewall";
/** The transient systemd timer (and service) of an armed revert. */
const REVERT_UNIT = "fmc-firewall-revert";
const DEFAULT_CONFIRM_TIMEOUT_S = 60;
const IN_SYNC = "firewall-in-sync";
/** Forwarding on the gateway of every LAN subnet: this phase's own, so it runs before any other host needs egress. */
const FORWARDING_FILE = "/etc/sysctl.d/80-fmc-firewall.conf";
const FORWARDING = { "net.ipv4.ip_forward": "1" };

const d = FIREWALL_STATE_DIR;
const TABLE = `inet ${FIREWALL_TABLE}`;

/**
 * Exit 0 when the kernel holds the rules last confirmed and they are the rendered ones:
 * the rendered file is the boot copy, no revert is pending, and the table lists as it
 * did right after its confirmation (a hand edit, a revert or a reboot without the unit
 * all show up here).
 */
const inSyncTest = [
  `cmp -s ${FIREWALL_RULES} ${FIREWALL_BOOT_RULES}`,
  `[ ! -e ${d}/armed ]`,
  `nft list table ${TABLE} 2>/dev/null | cmp -s - ${d}/live.txt`,
].join(" && ");

/** Whether a revert is pending: a live timer, or the detached sleep's process group. */
const REVERT_PENDING = `{ if [ -d /run/systemd/system ]; then systemctl is-active --quiet ${REVERT_UNIT}.timer; else [ -s ${d}/revert.pid ] && kill -0 -- "-$(cat ${d}/revert.pid)" 2>/dev/null; fi; }`;
/** Ends a pending revert's timer or sleep (no error when there is none). */
const STOP_REVERT = [
  `if [ -d /run/systemd/system ]; then`,
  `  systemctl stop ${REVERT_UNIT}.timer >/dev/null 2>&1 || true`,
  `  systemctl reset-failed ${REVERT_UNIT}.timer ${REVERT_UNIT}.service >/dev/null 2>&1 || true`,
  `elif [ -s ${d}/revert.pid ]; then`,
  `  kill -- "-$(cat ${d}/revert.pid)" 2>/dev/null || true`,
  `fi`,
  `rm -f ${d}/revert.pid`,
].join("\n");

/**
 * The revert itself. Whoever removes the `armed` file first wins: the revert (restores
 * the saved table) or the confirmation (keeps the new one), never both.
 */
const REVERT_SCRIPT = lines(
  "#!/bin/sh",
  HEADER("#"),
  `# Restores fmc's nftables table as it was before the last fmc apply, unless a new SSH`,
  `# connection confirmed that apply first (it removes ${d}/armed).`,
  `d=${d}`,
  `rm "$d/armed" 2>/dev/null || exit 0`,
  `if nft -f "$d/prev.nft"; then s=restored; else s=failed; fi`,
  `printf '%s %s %s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$s" "$(cat "$d/prev.what" 2>/dev/null)" > "$d/reverted"`,
);

/** Saves what a revert restores and arms it for `timeoutS` seconds. */
export function armCommand(timeoutS: number): Command {
  const n = Math.floor(timeoutS);
  const body = [
    "set -euo pipefail",
    `d=${d}`,
    'mkdir -p "$d" && chmod 700 "$d"',
    // a revert still pending from a run that did not finish keeps its saved table: that
    // one was confirmed, what the kernel holds now was not
    `if [ -e "$d/armed" ] && ${REVERT_PENDING}; then keep=1; else keep=0; fi`,
    STOP_REVERT,
    'if [ "$keep" = 0 ]; then',
    `  if nft list tables inet | grep -qx 'table ${TABLE}'; then`,
    `    { echo 'table ${TABLE}'; echo 'delete table ${TABLE}'; nft list table ${TABLE}; } > "$d/prev.nft.tmp"`,
    `    echo "fmc's table as it was" > "$d/prev.what"`,
    "  else",
    `    printf 'table ${TABLE}\\ndelete table ${TABLE}\\n' > "$d/prev.nft.tmp"`,
    `    echo "no fmc table (there was none)" > "$d/prev.what"`,
    "  fi",
    '  mv -f "$d/prev.nft.tmp" "$d/prev.nft"',
    "fi",
    `cat > "$d/revert.sh" <<'FMC_REVERT'`,
    REVERT_SCRIPT.trimEnd(),
    "FMC_REVERT",
    'rm -f "$d/reverted"',
    'date -u +%Y-%m-%dT%H:%M:%SZ > "$d/armed"',
    "if [ -d /run/systemd/system ]; then",
    `  systemd-run --quiet --unit=${REVERT_UNIT} --on-active=${n}s --timer-property=AccuracySec=1s /bin/sh "$d/revert.sh"`,
    "else",
    // no systemd as PID 1: a sleep in a session of its own, which outlives this SSH command
    `  setsid /bin/sh -c 'sleep ${n}; exec /bin/sh "$0/revert.sh"' "$d" </dev/null >/dev/null 2>&1 &`,
    '  echo "$!" > "$d/revert.pid"',
    "fi",
  ].join("\n");
  return script(body, `arm a revert: restore table ${TABLE} as it is now after ${n} s unless a new SSH connection confirms`);
}

/** Loads the rendered rules as one transaction; a failed load disarms the revert (nothing changed). */
export function loadCommand(): Command {
  const body = [`if ! nft -f ${FIREWALL_RULES}; then`, `  d=${d}`, '  rm -f "$d/armed"', STOP_REVERT, "  exit 1", "fi"].join("\n");
  return script(body, `nft -f ${FIREWALL_RULES} (one transaction: replaces table ${TABLE} only)`);
}

/** Run over a new SSH connection: disarms the revert, keeps the rules for the next boot and notes the table as confirmed. */
export function cancelCommand(): Command {
  const body = [
    "set -euo pipefail",
    `d=${d}`,
    'if ! rm "$d/armed" 2>/dev/null; then',
    `  echo "fmc: too late, the revert already ran: $(cat "$d/reverted" 2>/dev/null || echo 'no record')" >&2`,
    "  exit 3",
    "fi",
    STOP_REVERT,
    `mkdir -p "$(dirname ${FIREWALL_BOOT_RULES})"`,
    `cp ${FIREWALL_RULES} ${FIREWALL_BOOT_RULES}.fmc-tmp && mv -f ${FIREWALL_BOOT_RULES}.fmc-tmp ${FIREWALL_BOOT_RULES}`,
    `nft list table ${TABLE} > "$d/live.txt.tmp" && mv -f "$d/live.txt.tmp" "$d/live.txt"`,
  ].join("\n");
  return script(body, `confirm: disarm the revert, keep the rules for boot (${FIREWALL_BOOT_RULES})`);
}

/** Exit 0 when the last revert ran and restored the saved table. */
export const revertedCommand: Command = script(`[ ! -e ${d}/armed ] && grep -q ' restored ' ${d}/reverted`, "check that the revert restored the previous rules");

/** For tests and operators: prints the revert's state (see describeRevert). */
export const revertStatusCommand: Command = script(`if [ -e ${d}/armed ]; then echo "armed $(cat ${d}/armed)"; fi; if [ -e ${d}/reverted ]; then echo "reverted $(cat ${d}/reverted)"; fi; true`, "read the firewall revert's state");

export interface RevertState {
  /** A revert is armed (since this UTC time) and fires unless confirmed. */
  readonly armedSince?: string;
  /** The last revert that fired since the last arming: when, whether nft restored the table, and what it restored. */
  readonly reverted?: { readonly at: string; readonly ok: boolean; readonly restored: string };
}

/** Parses revertStatusCommand's output. */
export function describeRevert(stdout: string): RevertState {
  const armed = /^armed (\S+)/m.exec(stdout)?.[1];
  const rev = /^reverted (\S+) (restored|failed) (.*)$/m.exec(stdout);
  return { armedSince: armed, reverted: rev ? { at: rev[1]!, ok: rev[2] === "restored", restored: rev[3]! } : undefined };
}

/** fmc-firewall.service: loads the confirmed rules at boot, before the network comes up, after the distribution's nftables.service (which flushes the ruleset). */
export function firewallUnit(): string {
  return lines(
    HEADER("#"),
    "[Unit]",
    `Description=fmc firewall rules (nftables table ${TABLE}, as last confirmed by fmc apply)`,
    "Documentation=man:nft(8)",
    "DefaultDependencies=no",
    "Wants=network-pre.target",
    "Before=network-pre.target shutdown.target",
    "After=nftables.service",
    // nftables.service flushes the whole ruleset when it (re)starts or reloads: follow it
    "PartOf=nftables.service",
    "ReloadPropagatedFrom=nftables.service",
    "Conflicts=shutdown.target",
    `ConditionPathExists=${FIREWALL_BOOT_RULES}`,
    "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    `ExecStart=/usr/sbin/nft -f ${FIREWALL_BOOT_RULES}`,
    `ExecReload=/usr/sbin/nft -f ${FIREWALL_BOOT_RULES}`,
    "",
    "[Install]",
    "WantedBy=sysinit.target",
  );
}

const fwHost = (pc: PhaseContext): Host[] => (pc.render.spec.firewall ? [pc.render.topo.host(pc.render.spec.firewall.host)] : []);

export const firewall: Phase = {
  name: "firewall",
  description: "nftables gateway rules, checked, loaded atomically, confirmed over a new SSH connection or reverted",
  hosts: fwHost,
  facts: () => {
    const unit = unitFacts(FIREWALL_UNIT);
    return {
      packages: new Set(["nftables"]),
      files: new Set([FIREWALL_RULES, FORWARDING_FILE, ...unit.files]),
      units: new Set([...unit.units, "firewalld.service"]),
      sysctl: new Set(Object.keys(FORWARDING)),
      guards: new Map([[IN_SYNC, inSyncTest]]),
    };
  },
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const c = { host: host.name, phase: "firewall", mask: pc.mask };
    const timeoutS = pc.confirmTimeoutS ?? DEFAULT_CONFIRM_TIMEOUT_S;
    const out: Change[] = [];
    const pkg = packageChange(facts, FAMILIES[facts.os.family], ["nftables"], c);
    if (pkg) out.push(pkg);
    // firewalld (on by default on AlmaLinux) would drop what fmc's table forwards
    const firewalld = serviceChange(facts, { unit: "firewalld.service", enabled: false, running: false, riskIfTouched: ["firewalld's own rules go: fmc's table is the firewall's policy"] }, c);
    if (firewalld) out.push(firewalld);
    // forwarding with the rules, not in base: the phase order puts this host first, and the
    // other LAN hosts' first packages arrive through it
    out.push(...sysctlChanges(facts, FORWARDING_FILE, FORWARDING, c));
    const file = fileChange(facts, { path: FIREWALL_RULES, content: firewallNftables(pc.render), validate: "nft -c -f %s" }, c);
    if (file) out.push(file);
    const inSync = facts.guards.get(IN_SYNC) === 0;
    if (file || !inSync) {
      out.push({
        host: host.name,
        phase: "firewall",
        title: `load the firewall rules (table ${TABLE}), confirmed over a new SSH connection`,
        commands: [armCommand(timeoutS), loadCommand()],
        notes: [
          `armed: reverts in ${timeoutS} s unless a new SSH connection succeeds`,
          ...(file ? [] : ["the kernel's table is not the one last confirmed (changed by hand, reverted, or never loaded)"]),
        ],
        confirm: {
          cancel: cancelCommand(),
          timeoutS,
          describe: `firewall rules (nftables table ${TABLE})`,
          reverted: revertedCommand,
          hint: "the new rules would have cut fmc off: check firewall.management (who may SSH to the firewall) against where fmc connects from, then run fmc apply again",
        },
      });
    }
    out.push(...unitChanges(facts, { unit: FIREWALL_UNIT, content: firewallUnit(), enabled: true }, c));
    return out;
  },
};
