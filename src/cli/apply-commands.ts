// plan and apply: facts from live hosts, an exact per-host plan, and its execution.
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession, type Session } from "../engine/session.js";
import { apply as applyPlan, plan as makePlan, type Event, type Plan } from "../engine/run.js";
import type { HostsLock } from "../engine/hosts-lock.js";
import { describeOverrides } from "../engine/inventory.js";
import type { Change } from "../ops/change.js";
import { bold, confirm, dim, lockReport, n, red, yellow } from "./ui.js";
import { sessionArgs, sessionOptions } from "./session-args.js";

const progress = (e: Event) => {
  if (e.type === "facts") process.stderr.write(dim(`[${e.host}] facts read\n`));
  if (e.type === "phase") process.stderr.write(bold(`phase ${e.phase}: ${n(e.hosts, "host")}\n`));
  if (e.type === "change") process.stderr.write(`[${e.change.host}] ${e.change.phase}: ${e.change.title}\n`);
  if (e.type === "done") process.stderr.write(dim(`[${e.change.host}] ${e.change.phase}: done in ${Math.round(e.ms)} ms\n`));
  if (e.type === "reverting") process.stderr.write(red(`[${e.change.host}] ${e.change.phase}: not confirmed (${e.why}); waiting ${Math.ceil(e.waitMs / 1000)} s for the host to restore the previous state\n`));
};

/** --confirm-timeout: whole seconds, long enough for a new connection to get through. */
function confirmTimeout(value: string | undefined): number {
  const s = Number(value ?? 60);
  if (!Number.isInteger(s) || s < 10 || s > 3600) throw new FmcError("USAGE", `--confirm-timeout ${value}: whole seconds from 10 to 3600 please`);
  return s;
}

function printPlan(s: Session, p: Plan): void {
  const byHost = new Map<string, Change[]>();
  for (const c of p.changes) byHost.set(c.host, [...(byHost.get(c.host) ?? []), c]);
  for (const [host, changes] of byHost) {
    const t = s.inventory.targets.get(host);
    process.stdout.write(`${bold(host)} ${dim(`(${t?.address ?? "?"})`)}\n`);
    let phase = "";
    for (const c of changes) {
      if (c.phase !== phase) process.stdout.write(`  ${dim(c.phase)}\n`);
      phase = c.phase;
      process.stdout.write(`    ${yellow("~")} ${c.title}\n`);
      for (const note of c.notes) process.stdout.write(`      ${red("!")} ${note}\n`);
      if (c.diff) for (const line of c.diff.trimEnd().split("\n")) process.stdout.write(`      ${line}\n`);
    }
  }
  for (const w of p.warnings) process.stdout.write(`${yellow("warning")} ${w}\n`);
  if (p.skippedHosts.length) process.stdout.write(dim(`not in the ${s.inventory.source} inventory, skipped: ${p.skippedHosts.join(", ")}\n`));
  for (const d of describeOverrides(s.inventory.overrides)) process.stdout.write(dim(`lab stand-in: ${d}\n`));
  printUnreachable(s, p);
  process.stdout.write(p.changes.length ? `Plan: ${n(p.changes.length, "change")} on ${n(byHost.size, "host")}.\n` : "No changes: the hosts match the spec.\n");
}

function printUnreachable(s: Session, p?: Plan): void {
  for (const [host, why] of s.unreachable) process.stderr.write(`${red("unreachable")} ${bold(host)}: ${why}\n`);
  for (const [host, why] of p?.failedHosts ?? []) process.stderr.write(`${red("not planned")} ${bold(host)}: ${why}\n`);
}

function planJson(s: Session, p: Plan): string {
  return JSON.stringify(
    {
      changes: p.changes.map((c) => ({ host: c.host, phase: c.phase, title: c.title, notes: c.notes, diff: c.diff, commands: c.commands.map((x) => x.display) })),
      skippedHosts: p.skippedHosts,
      warnings: p.warnings,
      unreachable: Object.fromEntries([...s.unreachable, ...p.failedHosts]),
    },
    null,
    2,
  );
}

export const plan = defineCommand({
  meta: { name: "plan", description: "Read facts from the hosts over SSH and show exactly what apply would change; a host that can't be reached is reported and the exit code is 1. While a lab is up, the lab's inventory (lab/inventory.json in the state directory, .fmc/ next to the spec unless --state; fmc lab up writes it, fmc lab down removes it) redirects plan to the lab's hosts instead of the spec's addresses" },
  args: {
    ...sessionArgs,
    "detailed-exitcode": { type: "boolean", description: "exit 0: no changes, 2: changes, 1: error (as Terraform)", default: false },
    json: { type: "boolean", description: "machine-readable plan on stdout", default: false },
  },
  async run({ args }) {
    const s = await openSession(sessionOptions(args));
    try {
      const p = await makePlan(s.pc, s.phases, s.transports, { concurrency: s.concurrency, onEvent: args.json ? undefined : progress });
      if (args.json) process.stdout.write(planJson(s, p) + "\n");
      else printPlan(s, p);
      // hosts that could not be reached or read make the plan incomplete: that is an error
      process.exitCode = s.unreachable.size + p.failedHosts.size > 0 ? 1 : args["detailed-exitcode"] && p.changes.length > 0 ? 2 : 0;
    } finally {
      s.close();
    }
  },
});

export const apply = defineCommand({
  meta: { name: "apply", description: "Apply the plan: phases in order, hosts in parallel, safe to re-run; refuses while a host can't be reached. While a lab is up, the lab's inventory (lab/inventory.json in the state directory, .fmc/ next to the spec unless --state; fmc lab up writes it, fmc lab down removes it) redirects apply to the lab's hosts instead of the spec's addresses" },
  args: {
    ...sessionArgs,
    yes: { type: "boolean", alias: "y", description: "do not ask for confirmation", default: false },
    "confirm-timeout": {
      type: "string",
      description: "seconds after loading new firewall rules until the host restores the previous ones by itself, unless a new SSH connection gets through first",
      default: "60",
    },
  },
  async run({ args }) {
    const s = await openSession({ ...sessionOptions(args), confirmTimeoutS: confirmTimeout(args["confirm-timeout"]) });
    let lock: HostsLock | undefined;
    try {
      if (s.unreachable.size > 0) {
        printUnreachable(s);
        throw new FmcError("UNREACHABLE", `${n(s.unreachable.size, "host")} could not be reached; nothing was applied`, "bring them back and run apply again; fmc plan shows what the reachable hosts need meanwhile");
      }
      // the same lock as every day-2 runbook: none of them runs while apply does, nor apply while one does
      lock = await s.lockHosts("apply", lockReport);
      const started = performance.now();
      const p = await makePlan(s.pc, s.phases, s.transports, { concurrency: s.concurrency, onEvent: progress });
      printPlan(s, p);
      if (p.failedHosts.size > 0) throw new FmcError("FACTS", `facts of ${n(p.failedHosts.size, "host")} could not be read; nothing was applied`, "fix the cause shown above and run apply again");
      if (p.changes.length === 0) return;
      if (!args.yes && !(await confirm(`Apply ${n(p.changes.length, "change")}? [y/N] `, "apply needs confirmation"))) {
        process.stderr.write("nothing applied\n");
        return;
      }
      // re-planning after package installs may run a few steps other than the plan's
      const done = await applyPlan(p, s.transports, { concurrency: s.concurrency, onEvent: progress, reconnect: s.reconnect });
      process.stdout.write(`Applied ${n(done.changes, "change")} in ${((performance.now() - started) / 1000).toFixed(1)} s.\n`);
    } finally {
      await lock?.release();
      s.close();
    }
  },
});
