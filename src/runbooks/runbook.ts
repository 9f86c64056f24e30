// A day-2 runbook: the ordered steps of an operation on a running cluster (remove a node,
// upgrade, restore etcd, rotate certificates, reset), shown whole before it runs and run one
// step at a time, stopping at the first failure. Steps are either commands on a host (through
// its transport, so tests replay recorded answers) or checks fmc makes itself between them
// (re-reading etcd's health right before a member goes, for one).
import { FmcError } from "../errors.js";
import type { Command } from "../hosts/command.js";
import type { ExecResult, Transport } from "../hosts/transport.js";
import { setTimeout as sleep } from "node:timers/promises";

export interface RunbookStep {
  /** What the step does, in a few words: "drain worker1". */
  readonly title: string;
  /** The host it runs on (a spec host's name), or "this machine" for fmc's own checks. */
  readonly on: string;
  /** Shown under the step in the plan: a diff of a file it changes, say. */
  readonly detail?: string;
  /** The command, run through `on`'s transport; a non-zero exit fails the step. */
  readonly command?: Command;
  /** Reads the command's answer: a string is the failure's reason, undefined passes. */
  readonly verify?: (r: ExecResult) => string | undefined;
  /**
   * A wait: the command (and verify) are tried again every `everyS` seconds until they pass or
   * `seconds` have gone by; the last reason is the failure's.
   */
  readonly until?: { readonly seconds: number; readonly everyS?: number };
  /** fmc's own part (a re-check, a local file); throws to fail; may return a line to report. */
  readonly act?: (t: Transport | undefined) => Promise<string | void>;
}

export interface RunbookOutcome {
  /** Steps that finished, in order (all of them when ok). */
  readonly done: number;
  readonly failed?: { readonly index: number; readonly step: RunbookStep; readonly reason: string };
}

/** The runbook as people read it: numbered, each with its host and command. */
export function runbookText(heading: string, steps: readonly RunbookStep[]): string {
  const out = [heading];
  steps.forEach((s, i) => {
    out.push(`  ${i + 1}. ${s.title}`);
    if (s.command) out.push(`       on ${s.on}: ${s.command.display.split("\n")[0]}`);
    if (s.detail) out.push(...s.detail.trimEnd().split("\n").map((l) => `       ${l}`));
  });
  return `${out.join("\n")}\n`;
}

/** The last lines a failed command printed: what people need to see of it. */
function tail(r: ExecResult): string {
  const text = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-6).join("\n");
  return text ? `exit ${r.code}: ${text}` : `exit ${r.code}`;
}

/**
 * Runs the steps in order; the first failure stops the run (nothing after it runs) and is
 * returned with its reason. `report` hears each step's start and end.
 */
export async function runRunbook(steps: readonly RunbookStep[], transports: ReadonlyMap<string, Transport>, report: (line: string) => void = () => {}): Promise<RunbookOutcome> {
  for (const [i, step] of steps.entries()) {
    const label = `[${i + 1}/${steps.length}] ${step.on}: ${step.title}`;
    report(`${label} ...`);
    const t0 = performance.now();
    const t = transports.get(step.on);
    let reason: string | undefined;
    try {
      if (step.command) {
        if (!t) throw new FmcError("UNREACHABLE", `${step.on} is not connected`);
        const deadline = Date.now() + (step.until?.seconds ?? 0) * 1000;
        for (;;) {
          const r = await t.exec(step.command, step.title);
          reason = r.code !== 0 ? tail(r) : step.verify?.(r);
          if (!reason || !step.until || Date.now() >= deadline) break;
          await sleep((step.until.everyS ?? 2) * 1000);
        }
        if (reason && step.until) reason = `not done after ${step.until.seconds} s: ${reason}`;
      }
      if (!reason && step.act) {
        const line = await step.act(t);
        if (line) report(`    ${line}`);
      }
    } catch (e) {
      reason = (e as Error).message;
    }
    if (reason) {
      report(`${label}: FAILED`);
      return { done: i, failed: { index: i, step, reason } };
    }
    report(`${label}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return { done: steps.length };
}

/** What a stopped run leaves, for the error people read. */
export function stoppedText(steps: readonly RunbookStep[], o: RunbookOutcome): string {
  if (!o.failed) return "";
  const { index, step, reason } = o.failed;
  const doneText = index === 0 ? "nothing had run before it" : index === 1 ? "step 1 is done" : `steps 1-${index} are done`;
  const rest = steps.length - index - 1;
  return `stopped at step ${index + 1} of ${steps.length} (${step.title}) on ${step.on}: ${reason}\n${doneText}; ${rest === 0 ? "it was the last step" : `the ${rest} step(s) after it did not run`}`;
}
