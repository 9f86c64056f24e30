// systemd unit state: enabled, running, and reloaded when its configuration changed.
import { cmd, type Command } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change } from "./change.js";

export interface ServiceSpec {
  readonly unit: string;
  readonly enabled: boolean;
  /** Desired running state; undefined leaves it alone (e.g. units with conditions). */
  readonly running?: boolean;
  /** Configuration changed in this run: reload a running unit. */
  readonly reload?: boolean;
  /** Units that cannot reload (e.g. systemd-timesyncd) are restarted instead. */
  readonly reloadBy?: "reload" | "restart";
  /** Risk notes to attach when the unit is restarted or reloaded. */
  readonly riskIfTouched?: readonly string[];
}

export function serviceChange(facts: HostFacts, s: ServiceSpec, ctx: { host: string; phase: string }): Change | undefined {
  const state = facts.units.get(s.unit) ?? { active: "unknown", enabled: "not-found" };
  const commands: Command[] = [];
  const what: string[] = [];
  if (s.enabled && state.enabled !== "enabled") {
    commands.push(cmd("systemctl", "enable", s.unit));
    what.push("enable");
  }
  if (!s.enabled && state.enabled === "enabled") {
    commands.push(cmd("systemctl", "disable", s.unit));
    what.push("disable");
  }
  let touched = false;
  if (s.running === true && state.active !== "active") {
    commands.push(cmd("systemctl", state.active === "failed" ? "restart" : "start", s.unit));
    what.push(state.active === "failed" ? "restart (failed)" : "start");
  } else if (s.running === false && state.active === "active") {
    commands.push(cmd("systemctl", "stop", s.unit));
    what.push("stop");
    touched = true;
  } else if (s.reload && state.active === "active") {
    const verb = s.reloadBy ?? "reload";
    commands.push(cmd("systemctl", verb, s.unit));
    what.push(`${verb} (configuration changed)`);
    touched = true;
  }
  if (commands.length === 0) return undefined;
  return {
    host: ctx.host,
    phase: ctx.phase,
    title: `${what.join(", ")} ${s.unit}`,
    commands,
    notes: touched ? [...(s.riskIfTouched ?? [])] : [],
  };
}
