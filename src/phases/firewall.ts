// firewall: the LAN firewall host as an nftables gateway, from the firewall renderer.
// The rules are checked with `nft -c`, then loaded as one transaction that replaces only
// fmc's own table. A rule set could cut fmc off the host, so every load is confirmed:
// before it, the host arms a revert (a systemd timer, or a detached sleep where systemd
// is not PID 1) that restores fmc's table as it was; after it, apply opens a brand-new
// SSH connection and runs the cancel command there (Change.confirm, src/engine/run.ts).
// Only confirmed rules are kept for the next boot (fmc-firewall.service loads them). The
// arm/load/confirm/revert is src/ops/revert.ts, shared with the wireguard phase (vps1).
import { firewallNftables, FIREWALL_TABLE } from "../render/firewall.js";
import { HEADER, lines } from "../render/types.js";
import { FAMILIES } from "../hosts/os.js";
import type { Command } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import { fileChange } from "../ops/file.js";
import { packageChange } from "../ops/package.js";
import { serviceChange } from "../ops/service.js";
import { sysctlChanges } from "../ops/sysctl.js";
import { unitChanges, unitFacts } from "../ops/unit.js";
import type { Change } from "../ops/change.js";
import { confirmedLoad, DEFAULT_CONFIRM_TIMEOUT_S, nftRevert } from "../ops/revert.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";

/** The rules as rendered: written and checked on every change, loaded, confirmed. */
export const FIREWALL_RULES = "/etc/fmc/firewall.nft";
/** The last rules a new SSH connection got through: what the host loads at boot. */
const FIREWALL_BOOT_RULES = "/etc/nftables.d/fmc-firewall.nft";
const FIREWALL_UNIT = "fmc-firewall.service";
const IN_SYNC = "firewall-in-sync";
/** Forwarding on the gateway of every LAN subnet: this phase's own, so it runs before any other host needs egress. */
const FORWARDING_FILE = "/etc/sysctl.d/80-fmc-firewall.conf";
const FORWARDING = { "net.ipv4.ip_forward": "1" };

const TABLE = `inet ${FIREWALL_TABLE}`;

/** The firewall table's timed revert (src/ops/revert.ts), its state in /var/lib/fmc/firewall. */
export const FIREWALL_REVERT = nftRevert({ table: TABLE, rules: FIREWALL_RULES, bootRules: FIREWALL_BOOT_RULES, stateDir: "/var/lib/fmc/firewall", revertUnit: "fmc-firewall-revert" });

export const armCommand = (timeoutS: number): Command => FIREWALL_REVERT.arm(timeoutS);
export const loadCommand = (): Command => FIREWALL_REVERT.load;
export const cancelCommand = (): Command => FIREWALL_REVERT.cancel;
export const revertedCommand: Command = FIREWALL_REVERT.reverted;
/** For tests and operators: prints the revert's state (see describeRevert). */
export const revertStatusCommand: Command = FIREWALL_REVERT.status;
export { describeRevert, type RevertState } from "../ops/revert.js";

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
      guards: new Map([[IN_SYNC, FIREWALL_REVERT.inSyncTest]]),
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
      out.push(
        confirmedLoad(FIREWALL_REVERT, {
          host: host.name,
          phase: "firewall",
          timeoutS,
          title: `load the firewall rules (table ${TABLE}), confirmed over a new SSH connection`,
          describe: `firewall rules (nftables table ${TABLE})`,
          fileChanged: !!file,
          hint: "the new rules would have cut fmc off: check firewall.management (who may SSH to the firewall) against where fmc connects from, then run fmc apply again",
        }),
      );
    }
    out.push(...unitChanges(facts, { unit: FIREWALL_UNIT, content: firewallUnit(), enabled: true }, c));
    return out;
  },
};
