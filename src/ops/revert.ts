// A timed revert for an nftables table fmc loads on a host it reaches over SSH (firewall1's
// fmc_firewall, vps1's fmc_gateway): rules that could cut fmc off are never loaded without a
// way back. Before the load the host arms a revert (a transient systemd timer, or a detached
// sleep where systemd is not PID 1) that restores the table as it was; after the load, apply
// opens a brand-new SSH connection and runs the cancel command there (Change.confirm,
// src/engine/run.ts). Only a confirmation copies the rules to the file the host loads at
// boot, so a reboot never brings back rules nobody got through.
import { HEADER, lines } from "../render/types.js";
import { script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { Change } from "./change.js";

/** Seconds before an unconfirmed load reverts, unless fmc apply --confirm-timeout says otherwise. */
export const DEFAULT_CONFIRM_TIMEOUT_S = 60;

/** One table under a timed revert: where its files and state are on the host. */
export interface NftRevertSpec {
  /** The table with its family: "inet fmc_firewall". Its file replaces only this table. */
  readonly table: string;
  /** The rendered rules as fmc writes them (checked by `nft -c`): what is loaded and confirmed. */
  readonly rules: string;
  /** Written by a confirmation only: what the host loads at boot. */
  readonly bootRules: string;
  /** The revert's state: prev.nft (what it restores), armed, reverted, live.txt (the table as confirmed). */
  readonly stateDir: string;
  /** The transient systemd timer (and service) of an armed revert. */
  readonly revertUnit: string;
}

/** The revert's state as revertStatus prints it (see describeRevert). */
export interface RevertState {
  /** A revert is armed (since this UTC time) and fires unless confirmed. */
  readonly armedSince?: string;
  /** The last revert that fired since the last arming: when, whether nft restored the table, and what it restored. */
  readonly reverted?: { readonly at: string; readonly ok: boolean; readonly restored: string };
}

/** The commands of one table's timed revert. */
export interface NftRevert {
  readonly spec: NftRevertSpec;
  /**
   * Exit 0 when the kernel holds the rules last confirmed and they are the rendered ones:
   * the rendered file is the boot copy, no revert is pending, and the table lists as it did
   * right after its confirmation (a hand edit, a revert or a reboot all show up here).
   */
  readonly inSyncTest: string;
  /** Saves what a revert restores and arms it for `timeoutS` seconds. */
  arm(timeoutS: number): Command;
  /** Loads the rules as one transaction; a failed load disarms the revert (nothing changed). */
  readonly load: Command;
  /** Run over a new SSH connection: disarms the revert, keeps the rules for the next boot and notes the table as confirmed. */
  readonly cancel: Command;
  /** Exit 0 when the last revert ran and restored the saved table. */
  readonly reverted: Command;
  /** Prints the revert's state (describeRevert reads it). */
  readonly status: Command;
}

export function nftRevert(spec: NftRevertSpec): NftRevert {
  const d = quote(spec.stateDir);
  const table = spec.table;
  const unit = quote(spec.revertUnit);
  const rules = quote(spec.rules);
  const boot = quote(spec.bootRules);
  if (!/^(inet|ip|ip6|arp|bridge|netdev) [a-z_][a-z0-9_]*$/.test(table)) throw new Error(`internal: not an nftables table: ${table}`);

  const inSyncTest = [`cmp -s ${rules} ${boot}`, `[ ! -e ${d}/armed ]`, `nft list table ${table} 2>/dev/null | cmp -s - ${d}/live.txt`].join(" && ");

  /** Whether a revert is pending: a live timer, or the detached sleep's process group. */
  const pending = `{ if [ -d /run/systemd/system ]; then systemctl is-active --quiet ${unit}.timer; else [ -s ${d}/revert.pid ] && kill -0 -- "-$(cat ${d}/revert.pid)" 2>/dev/null; fi; }`;
  /** Ends a pending revert's timer or sleep (no error when there is none). */
  const stopRevert = [
    `if [ -d /run/systemd/system ]; then`,
    `  systemctl stop ${unit}.timer >/dev/null 2>&1 || true`,
    `  systemctl reset-failed ${unit}.timer ${unit}.service >/dev/null 2>&1 || true`,
    `elif [ -s ${d}/revert.pid ]; then`,
    `  kill -- "-$(cat ${d}/revert.pid)" 2>/dev/null || true`,
    `fi`,
    `rm -f ${d}/revert.pid`,
  ].join("\n");

  // Whoever removes the `armed` file first wins: the revert (restores the saved table) or the
  // confirmation (keeps the new one), never both.
  const revertScript = lines(
    "#!/bin/sh",
    HEADER("#"),
    `# Restores fmc's nftables table ${table} as it was before the last fmc apply, unless a new`,
    `# SSH connection confirmed that apply first (it removes ${spec.stateDir}/armed).`,
    `d=${d}`,
    `rm "$d/armed" 2>/dev/null || exit 0`,
    `if nft -f "$d/prev.nft"; then s=restored; else s=failed; fi`,
    `printf '%s %s %s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$s" "$(cat "$d/prev.what" 2>/dev/null)" > "$d/reverted"`,
  );

  const arm = (timeoutS: number): Command => {
    const n = Math.floor(timeoutS);
    const body = [
      "set -euo pipefail",
      `d=${d}`,
      'mkdir -p "$d" && chmod 700 "$d"',
      // a revert still pending from a run that did not finish keeps its saved table: that
      // one was confirmed, what the kernel holds now was not
      `if [ -e "$d/armed" ] && ${pending}; then keep=1; else keep=0; fi`,
      stopRevert,
      'if [ "$keep" = 0 ]; then',
      `  if nft list tables ${table.split(" ")[0]} | grep -qx 'table ${table}'; then`,
      `    { echo 'table ${table}'; echo 'delete table ${table}'; nft list table ${table}; } > "$d/prev.nft.tmp"`,
      `    echo "fmc's table as it was" > "$d/prev.what"`,
      "  else",
      `    printf 'table ${table}\\ndelete table ${table}\\n' > "$d/prev.nft.tmp"`,
      `    echo "no fmc table (there was none)" > "$d/prev.what"`,
      "  fi",
      '  mv -f "$d/prev.nft.tmp" "$d/prev.nft"',
      "fi",
      `cat > "$d/revert.sh" <<'FMC_REVERT'`,
      revertScript.trimEnd(),
      "FMC_REVERT",
      'rm -f "$d/reverted"',
      'date -u +%Y-%m-%dT%H:%M:%SZ > "$d/armed"',
      "if [ -d /run/systemd/system ]; then",
      `  systemd-run --quiet --unit=${unit} --on-active=${n}s --timer-property=AccuracySec=1s /bin/sh "$d/revert.sh"`,
      "else",
      // no systemd as PID 1: a sleep in a session of its own, which outlives this SSH command
      `  setsid /bin/sh -c 'sleep ${n}; exec /bin/sh "$0/revert.sh"' "$d" </dev/null >/dev/null 2>&1 &`,
      '  echo "$!" > "$d/revert.pid"',
      "fi",
    ].join("\n");
    return script(body, `arm a revert: restore table ${table} as it is now after ${n} s unless a new SSH connection confirms`);
  };

  const load = script(
    [`if ! nft -f ${rules}; then`, `  d=${d}`, '  rm -f "$d/armed"', stopRevert, "  exit 1", "fi"].join("\n"),
    `nft -f ${spec.rules} (one transaction: replaces table ${table} only)`,
  );

  const cancel = script(
    [
      "set -euo pipefail",
      `d=${d}`,
      'if ! rm "$d/armed" 2>/dev/null; then',
      `  echo "fmc: too late, the revert already ran: $(cat "$d/reverted" 2>/dev/null || echo 'no record')" >&2`,
      "  exit 3",
      "fi",
      stopRevert,
      `mkdir -p "$(dirname ${boot})"`,
      `cp ${rules} ${boot}.fmc-tmp && mv -f ${boot}.fmc-tmp ${boot}`,
      `nft list table ${table} > "$d/live.txt.tmp" && mv -f "$d/live.txt.tmp" "$d/live.txt"`,
    ].join("\n"),
    `confirm: disarm the revert, keep the rules for boot (${spec.bootRules})`,
  );

  const reverted = script(`[ ! -e ${d}/armed ] && grep -q ' restored ' ${d}/reverted`, `check that the revert restored the previous table ${table}`);
  const status = script(`if [ -e ${d}/armed ]; then echo "armed $(cat ${d}/armed)"; fi; if [ -e ${d}/reverted ]; then echo "reverted $(cat ${d}/reverted)"; fi; true`, `read the revert's state of table ${table}`);
  return { spec, inSyncTest, arm, load, cancel, reverted, status };
}

/** Parses NftRevert.status's output. */
export function describeRevert(stdout: string): RevertState {
  const armed = /^armed (\S+)/m.exec(stdout)?.[1];
  const rev = /^reverted (\S+) (restored|failed) (.*)$/m.exec(stdout);
  return { armedSince: armed, reverted: rev ? { at: rev[1]!, ok: rev[2] === "restored", restored: rev[3]! } : undefined };
}

export interface ConfirmedLoadSpec {
  readonly host: string;
  readonly phase: string;
  readonly timeoutS: number;
  /** A plural noun read as "the new …" and "the previous …": "firewall rules (nftables table inet fmc_firewall)". */
  readonly describe: string;
  /** The likely cause when a load is reverted, and what to do: the error's hint. */
  readonly hint: string;
  /** Whether the rules file changed in this plan; otherwise the kernel's table drifted from the confirmed one. */
  readonly fileChanged: boolean;
  readonly title?: string;
}

/** The change that loads a table under its revert: armed first, loaded, then confirmed over a new connection by apply. */
export function confirmedLoad(r: NftRevert, o: ConfirmedLoadSpec): Change {
  return {
    host: o.host,
    phase: o.phase,
    title: o.title ?? `load ${o.describe}, confirmed over a new SSH connection`,
    commands: [r.arm(o.timeoutS), r.load],
    notes: [
      `armed: reverts in ${o.timeoutS} s unless a new SSH connection succeeds`,
      ...(o.fileChanged ? [] : ["the kernel's table is not the one last confirmed (changed by hand, reverted, or never loaded)"]),
    ],
    confirm: { cancel: r.cancel, timeoutS: o.timeoutS, describe: o.describe, reverted: r.reverted, hint: o.hint },
  };
}
