// systemd unit state: enabled, running, and reloaded when its configuration changed.
// A reload after a config change uses the systemctl verb that is right whatever the
// unit's state is when it runs: facts are read before earlier steps run, and an
// earlier step may have started the unit already (apt's postinst does, on Debian).
import { cmd, script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, ChangeSite } from "./change.js";

/**
 * A config change must reach its daemon even if the run stops between writing the file
 * and reloading (a lost connection, a failed reload): the write is preceded by a marker
 * on the host, and only a successful reload removes it. A later plan that finds the
 * marker reloads although the file already matches.
 */
export const PENDING_DIR = "/var/lib/fmc/pending";
export const pendingMarker = (unit: string) => `${PENDING_DIR}/${unit}`;
export const pendingFacts = (...units: string[]) => ({ files: new Set(units.map(pendingMarker)) });
export const reloadPending = (facts: HostFacts, unit: string) => !!facts.files.get(pendingMarker(unit));

/** A reload that succeeded makes the change live: only then does the pending mark go. */
function reloading(verb: string, unit: string): Command {
  const c = cmd("systemctl", verb, unit);
  return script(`${c.shell} && rm -f ${quote(pendingMarker(unit))}`, c.display);
}

/** The config change, marking `unit` as needing a reload before the new file goes live. */
export function markingReload(change: Change, unit: string): Change {
  const mark = script(`mkdir -p ${PENDING_DIR} && touch ${quote(pendingMarker(unit))}`, `note that ${unit} must reload`);
  return { ...change, commands: [mark, ...change.commands] };
}

export interface ServiceSpec {
  readonly unit: string;
  readonly enabled: boolean;
  /** Desired running state; undefined leaves it alone (e.g. units with conditions). */
  readonly running?: boolean;
  /** Configuration changed in this run: reload a running unit. */
  readonly reload?: boolean;
  /** A configuration change of an earlier run that never reached the daemon (see markingReload). */
  readonly pending?: boolean;
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

export function serviceChange(facts: HostFacts, spec: ServiceSpec, ctx: ChangeSite): Change | undefined {
  const earlier = !!spec.pending && !spec.reload;
  const s = { ...spec, reload: !!spec.reload || !!spec.pending };
  const state = facts.units.get(s.unit) ?? { active: "unknown", enabled: "not-found" };
  const commands: Command[] = [];
  const what: string[] = [];
  let why = "";
  // no --no-reload here: the enable's own reload also refreshes the manager's cached
  // UnitFileState of a loaded unit, which is what facts read (systemctl show); without it a
  // running unit reads "disabled" until the next reload and every plan enables it again
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
    commands.push(reloading(restartOnly ? "restart" : "reload-or-restart", s.unit));
    if (s.installing) {
      what.push(restartOnly ? "start or restart" : "start or reload");
      why = " (installing its package may start it with the package's own config first)";
    } else if (state.active === "active") {
      what.push(`${restartOnly ? "restart" : "reload"} (configuration changed${earlier ? " in an earlier run that did not finish" : ""})`);
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
    commands.push(reloading(restartOnly ? "try-restart" : "try-reload-or-restart", s.unit));
    if (s.installing) {
      what.push(`${restartOnly ? "restart" : "reload"} if running`);
      why = " (its package is installed in this run)";
    } else {
      what.push(`${restartOnly ? "restart" : "reload"} (configuration changed${earlier ? " in an earlier run that did not finish" : ""})`);
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
