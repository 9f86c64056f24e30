// systemd unit state: enabled, running, and reloaded when its configuration changed.
// A reload after a config change uses the systemctl verb that is right whatever the
// unit's state is when it runs: facts are read before earlier steps run, and an
// earlier step may have started the unit already (apt's postinst does, on Debian).
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
  /**
   * The unit's package is installed earlier in this run, so the facts cannot know its
   * state then: the package may already have started it with its own config.
   */
  readonly installing?: boolean;
  /** Risk notes to attach when the unit is restarted or reloaded. */
  readonly riskIfTouched?: readonly string[];
}

export function serviceChange(facts: HostFacts, s: ServiceSpec, ctx: { host: string; phase: string }): Change | undefined {
  const state = facts.units.get(s.unit) ?? { active: "unknown", enabled: "not-found" };
  const commands: Command[] = [];
  const what: string[] = [];
  let why = "";
  if (s.enabled && state.enabled !== "enabled") {
    commands.push(cmd("systemctl", "enable", s.unit));
    what.push("enable");
  }
  if (!s.enabled && state.enabled === "enabled") {
    commands.push(cmd("systemctl", "disable", s.unit));
    what.push("disable");
  }
  const restartOnly = s.reloadBy === "restart";
  let touched = false;
  if (s.running === true && s.reload) {
    // reload-or-restart starts a stopped unit and reloads a running one; restart
    // does both for units that cannot reload
    commands.push(cmd("systemctl", restartOnly ? "restart" : "reload-or-restart", s.unit));
    if (s.installing) {
      what.push(restartOnly ? "start or restart" : "start or reload");
      why = " (installing its package may start it with the package's own config first)";
    } else if (state.active === "active") {
      what.push(`${restartOnly ? "restart" : "reload"} (configuration changed)`);
      touched = true;
    } else what.push(state.active === "failed" ? "restart (failed)" : "start");
  } else if (s.running === true && state.active !== "active") {
    commands.push(cmd("systemctl", state.active === "failed" ? "restart" : "start", s.unit));
    what.push(state.active === "failed" ? "restart (failed)" : "start");
  } else if (s.running === false && state.active === "active") {
    commands.push(cmd("systemctl", "stop", s.unit));
    what.push("stop");
    touched = true;
  } else if (s.running === undefined && s.reload && (state.active === "active" || s.installing)) {
    // only if it runs then: this unit's running state is not ours to decide
    commands.push(cmd("systemctl", restartOnly ? "try-restart" : "try-reload-or-restart", s.unit));
    if (s.installing) {
      what.push(`${restartOnly ? "restart" : "reload"} if running`);
      why = " (its package is installed in this run)";
    } else {
      what.push(`${restartOnly ? "restart" : "reload"} (configuration changed)`);
      touched = true;
    }
  }
  if (commands.length === 0) return undefined;
  return {
    host: ctx.host,
    phase: ctx.phase,
    title: `${what.join(", ")} ${s.unit}${why}`,
    commands,
    notes: touched ? [...(s.riskIfTouched ?? [])] : [],
  };
}
