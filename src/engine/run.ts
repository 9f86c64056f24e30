// Plan and apply. Facts are gathered once per host (one round trip), every phase plans
// from them with pure functions, and apply runs the planned commands: phases in order,
// hosts in parallel inside a phase, each host's changes in order. A failure stops the
// run after the current phase, naming the host and the step.
//
// Some steps change what the facts say (a package install brings files, units and, on
// Debian, started services), so apply re-reads a host's facts after such a step and
// re-plans the rest of that host's phase, and before each phase it re-reads the hosts
// an earlier phase changed. A host nothing changed is read once per run.
//
// A change that could cut fmc off its host (Change.confirm: firewall rules) arms a revert
// on the host first; after it, apply opens a brand-new connection to the host over the
// same path and runs the change's cancel command there. If that fails, the revert is left
// to fire: apply waits until it has, checks over yet another new connection, and stops
// with an error saying what was reverted and why.
import type { ExecResult, Transport } from "../hosts/transport.js";
import { emptyRequest, gatherFacts, mergeRequests, type FactRequest, type HostFacts } from "../hosts/facts.js";
import type { Change, ConfirmSpec } from "../ops/change.js";
import type { Phase, PhaseContext } from "../phases/phase.js";
import type { Host } from "../model/schema.js";
import { FmcError } from "../errors.js";

export interface Plan {
  readonly phases: readonly Phase[];
  readonly changes: readonly Change[];
  readonly facts: ReadonlyMap<string, HostFacts>;
  /** Hosts the phases wanted but the inventory does not have (e.g. lab --only). */
  readonly skippedHosts: readonly string[];
  /** Hosts that answered but whose facts could not be read, with the reason: not planned. */
  readonly failedHosts: ReadonlyMap<string, string>;
  /** What was read from each host, so apply can read it again. */
  readonly requests: ReadonlyMap<string, FactRequest>;
  /** The context the phases planned in, so apply can re-plan. */
  readonly context: PhaseContext;
  /** Design risks the planned phases state whether or not anything changes. */
  readonly warnings: readonly string[];
}

export type Event =
  | { type: "facts"; host: string }
  | { type: "phase"; phase: string; hosts: number }
  | { type: "change"; change: Change }
  | { type: "done"; change: Change; ms: number }
  /** A confirmed change could not be confirmed: apply waits for the host's own revert. */
  | { type: "reverting"; change: Change; why: string; waitMs: number };

/** Opens brand-new connections, for changes that must be confirmed over one (Change.confirm). */
export interface Reconnect {
  /** A new connection to the host over the same path as the run's own (never the open one). */
  open(host: string): Promise<Transport>;
  /** How the host is reached, for messages: "10.17.2.1:22". */
  where(host: string): string;
}

export interface ApplyOptions {
  concurrency: number;
  onEvent?: (e: Event) => void;
  /** Needed when the plan has changes with `confirm`. */
  reconnect?: Reconnect;
  /** How apply waits for a revert to fire (tests pass a fake). */
  sleep?: (ms: number) => Promise<void>;
}

/** Beyond its timeout, how long apply gives a host's revert to fire before checking it. */
export const REVERT_MARGIN_MS = 5_000;

/** Runs fn over items with at most `limit` in flight. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: "fulfilled", value: await fn(items[i]!) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** One item at a time, in order; stops at the first failure (the rest never start). */
export async function inOrder<T, R>(items: readonly T[], _limit: number, fn: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = [];
  for (const item of items) {
    try {
      results.push({ status: "fulfilled", value: await fn(item) });
    } catch (reason) {
      results.push({ status: "rejected", reason });
      break;
    }
  }
  return results;
}

function failures(results: PromiseSettledResult<unknown>[]): Error[] {
  return results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as Error);
}

function throwFactErrors(results: PromiseSettledResult<unknown>[]): void {
  const errs = failures(results);
  if (errs.length) throw errs.length === 1 ? errs[0]! : new FmcError("FACTS", errs.map((e) => e.message).join("\n"));
}

/**
 * What a plan reads from each host: every phase's request for the hosts it changes and the
 * peers it looks at, merged per host, with the phases that asked (a peer's marked so).
 */
export function factRequests(pc: PhaseContext, phases: readonly Phase[]): Map<string, { request: FactRequest; readFor: string[] }> {
  const out = new Map<string, { request: FactRequest; readFor: string[] }>();
  for (const phase of phases) {
    const own = new Set(phase.hosts(pc).map((h) => h.name));
    for (const h of [...phase.hosts(pc), ...(phase.peers?.(pc) ?? [])]) {
      const entry = out.get(h.name) ?? { request: emptyRequest(), readFor: [] };
      mergeRequests(entry.request, phase.facts(pc, h));
      const why = own.has(h.name) ? phase.name : `${phase.name} (as a peer)`;
      if (!entry.readFor.includes(why) && !entry.readFor.includes(phase.name)) entry.readFor.push(why);
      out.set(h.name, entry);
    }
  }
  return out;
}

export async function plan(pc: PhaseContext, phases: readonly Phase[], transports: ReadonlyMap<string, Transport>, opts: { concurrency: number; onEvent?: (e: Event) => void }): Promise<Plan> {
  const wanted = new Map<string, FactRequest>();
  const skipped = new Set<string>();
  for (const [name, { request }] of factRequests(pc, phases)) {
    if (transports.has(name)) wanted.set(name, request);
    else skipped.add(name);
  }
  const facts = new Map<string, HostFacts>();
  const failedHosts = new Map<string, string>();
  // one host whose facts can't be read (sudo wants a password, a timeout) is reported;
  // the others are still planned
  await pool([...wanted.keys()], opts.concurrency, async (name) => {
    try {
      facts.set(name, await gatherFacts(transports.get(name)!, wanted.get(name)!));
      opts.onEvent?.({ type: "facts", host: name });
    } catch (e) {
      failedHosts.set(name, (e as Error).message);
    }
  });
  const changes: Change[] = [];
  for (const phase of phases) {
    const ctx = phaseContext(pc, phase, facts);
    for (const h of phase.hosts(pc)) {
      const f = facts.get(h.name);
      if (f) changes.push(...phase.plan(ctx, h, f));
    }
  }
  const warnings = phases.filter((p) => p.hosts(pc).some((h) => facts.has(h.name))).flatMap((p) => p.warnings?.(pc) ?? []);
  return { phases, changes, facts, skippedHosts: [...skipped], failedHosts, requests: wanted, context: pc, warnings };
}

/** A phase that reads other hosts' facts plans with all of them. */
const phaseContext = (pc: PhaseContext, phase: Phase, facts: ReadonlyMap<string, HostFacts>): PhaseContext => (phase.peers ? { ...pc, facts } : pc);

/** Two plans of the same step compare equal: a re-plan never repeats a step that ran. */
const stepKey = (c: Change) => `${c.title}\n${c.commands.map((x) => x.shell).join("\n")}`;

/** Runs the plan; returns how many changes ran (re-planning may differ from the plan's count). */
export async function apply(p: Plan, transports: ReadonlyMap<string, Transport>, opts: ApplyOptions): Promise<{ changes: number }> {
  const facts = new Map(p.facts);
  /** Hosts changed since their facts were last read. */
  const changed = new Set<string>();
  const read = async (host: string) => {
    facts.set(host, await gatherFacts(transports.get(host)!, p.requests.get(host)!));
    changed.delete(host);
    opts.onEvent?.({ type: "facts", host });
  };
  let ran = 0;
  for (const phase of p.phases) {
    const hosts = phase.hosts(p.context).filter((h) => facts.has(h.name));
    const peers = (phase.peers?.(p.context) ?? []).filter((h) => facts.has(h.name) && !hosts.includes(h));
    const stale = [...hosts, ...peers].filter((h) => changed.has(h.name));
    throwFactErrors(await pool(stale, opts.concurrency, (h) => read(h.name)));
    // a phase that reads other hosts' facts is planned again from what they say now
    const replanAll = !!phase.peers;
    const ctx = phaseContext(p.context, phase, facts);
    const byHost: Array<[Host, Change[]]> = [];
    for (const h of hosts) {
      const changes = replanAll || stale.includes(h) ? phase.plan(ctx, h, facts.get(h.name)!) : p.changes.filter((c) => c.phase === phase.name && c.host === h.name);
      if (changes.length) byHost.push([h, changes]);
    }
    if (byHost.length === 0) continue;
    opts.onEvent?.({ type: "phase", phase: phase.name, hosts: byHost.length });
    const results = await (phase.serial ? inOrder : pool)(byHost, opts.concurrency, async ([h, planned]) => {
      const t = transports.get(h.name)!;
      const done = new Set<string>();
      let queue = planned;
      while (queue.length) {
        const [change, ...rest] = queue as [Change, ...Change[]];
        queue = rest;
        opts.onEvent?.({ type: "change", change });
        const started = performance.now();
        const step = `${phase.name}: ${change.title}`;
        if (change.confirm && !opts.reconnect) throw new FmcError("APPLY_FAILED", `${h.name}: ${step} must be confirmed over a new SSH connection, and this run cannot open one; nothing was changed`);
        /** When the first command (a confirmed change's arming of its revert) returned. */
        let armedAt: number | undefined;
        for (const command of change.commands) {
          let r: ExecResult;
          try {
            r = await t.exec(command, step);
          } catch (e) {
            changed.add(h.name);
            // the connection was lost after the revert was armed: it fires by itself
            if (change.confirm && armedAt !== undefined) throw await revertedError(h.name, change, change.confirm, `the connection fmc had open was lost: ${(e as Error).message}`, armedAt, opts);
            throw e;
          }
          armedAt ??= performance.now();
          if (r.code !== 0) {
            changed.add(h.name);
            throw new FmcError("APPLY_FAILED", `${h.name}: ${step} failed (exit ${r.code})${r.stderr.trim() ? `:\n${r.stderr.trim()}` : ""}`);
          }
        }
        changed.add(h.name);
        if (change.confirm) await confirmOverNewConnection(h.name, change, change.confirm, armedAt ?? performance.now(), opts);
        change.after?.();
        done.add(stepKey(change));
        ran++;
        opts.onEvent?.({ type: "done", change, ms: performance.now() - started });
        if (change.refreshesFacts) {
          await read(h.name);
          queue = phase.plan(phaseContext(p.context, phase, facts), h, facts.get(h.name)!).filter((c) => !done.has(stepKey(c)));
        }
      }
    });
    const errs = failures(results);
    if (errs.length) {
      throw new FmcError(
        errs.length === 1 && errs[0] instanceof FmcError ? errs[0].code : "APPLY_FAILED",
        `apply stopped in phase ${phase.name}:\n${errs.map((e) => `  ${e.message}`).join("\n")}`,
        // a reverted change knows its likely cause: its hint comes first
        [...errs.flatMap((e) => (e instanceof FmcError && e.code === "REVERTED" && e.hint ? [e.hint] : [])), "later phases did not run; fix the cause and run fmc apply again: finished changes are not repeated"].join("; "),
      );
    }
  }
  return { changes: ran };
}

/** Runs the cancel command over a brand-new connection; if it can't, waits for the host's revert and throws. */
async function confirmOverNewConnection(host: string, change: Change, c: ConfirmSpec, armedAt: number, opts: ApplyOptions): Promise<void> {
  const r = opts.reconnect!;
  let why: string;
  try {
    const fresh = await r.open(host);
    try {
      const res = await fresh.exec(c.cancel, `${change.phase}: confirm ${change.title}`);
      if (res.code === 0) return;
      why = `the confirming command failed there (exit ${res.code})${res.stderr.trim() ? `: ${res.stderr.trim()}` : ""}`;
    } finally {
      fresh.close();
    }
  } catch (e) {
    why = (e as Error).message;
  }
  throw await revertedError(host, change, c, `a new SSH connection to ${host} (${r.where(host)}) failed after the new ${c.describe} were applied: ${why}`, armedAt, opts);
}

/** Waits until the host's revert has fired, checks it over another new connection, and says what happened. */
async function revertedError(host: string, change: Change, c: ConfirmSpec, why: string, armedAt: number, opts: ApplyOptions): Promise<FmcError> {
  const waitMs = Math.max(0, Math.ceil(armedAt + c.timeoutS * 1000 + REVERT_MARGIN_MS - performance.now()));
  opts.onEvent?.({ type: "reverting", change, why, waitMs });
  await (opts.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))))(waitMs);
  let outcome: string;
  try {
    const fresh = await opts.reconnect!.open(host);
    try {
      if (!c.reverted) outcome = `the previous ${c.describe} were restored after ${c.timeoutS} s (a new connection gets through again)`;
      else {
        const res = await fresh.exec(c.reverted, `${change.phase}: check the revert of ${change.title}`);
        outcome =
          res.code === 0
            ? `the previous ${c.describe} were restored after ${c.timeoutS} s`
            : `the host does not report the revert (exit ${res.code}${res.stderr.trim() ? `: ${res.stderr.trim()}` : ""}): the new ${c.describe} may still be in place`;
      }
    } finally {
      fresh.close();
    }
  } catch (e) {
    outcome = `the revert was due after ${c.timeoutS} s, but fmc still cannot connect to check it: ${(e as Error).message}`;
  }
  return new FmcError("REVERTED", `${host}: ${why} — ${outcome}`, c.hint ?? "fix what blocked the new connection and run fmc apply again");
}
