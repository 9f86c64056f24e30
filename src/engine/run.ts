// Plan and apply. Facts are gathered once per host (one round trip), every phase plans
// from them with pure functions, and apply runs the planned commands: phases in order,
// hosts in parallel inside a phase, each host's changes in order. A failure stops the
// run after the current phase, naming the host and the step.
import type { Transport } from "../hosts/transport.js";
import { emptyRequest, gatherFacts, mergeRequests, type HostFacts } from "../hosts/facts.js";
import type { Change } from "../ops/change.js";
import type { Phase, PhaseContext } from "../phases/phase.js";
import { FmcError } from "../errors.js";

export interface Plan {
  readonly phases: readonly Phase[];
  readonly changes: readonly Change[];
  readonly facts: ReadonlyMap<string, HostFacts>;
  /** Hosts the phases wanted but the inventory does not have (e.g. lab --only). */
  readonly skippedHosts: readonly string[];
}

export type Event =
  | { type: "facts"; host: string }
  | { type: "phase"; phase: string; hosts: number }
  | { type: "change"; change: Change }
  | { type: "done"; change: Change; ms: number };

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

function failures(results: PromiseSettledResult<unknown>[]): Error[] {
  return results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as Error);
}

export async function plan(pc: PhaseContext, phases: readonly Phase[], transports: ReadonlyMap<string, Transport>, opts: { concurrency: number; onEvent?: (e: Event) => void }): Promise<Plan> {
  const wanted = new Map<string, ReturnType<typeof emptyRequest>>();
  const skipped = new Set<string>();
  for (const phase of phases) {
    for (const h of phase.hosts(pc)) {
      if (!transports.has(h.name)) {
        skipped.add(h.name);
        continue;
      }
      wanted.set(h.name, mergeRequests(wanted.get(h.name) ?? emptyRequest(), phase.facts(pc, h)));
    }
  }
  const facts = new Map<string, HostFacts>();
  const names = [...wanted.keys()];
  const gathered = await pool(names, opts.concurrency, async (name) => {
    facts.set(name, await gatherFacts(transports.get(name)!, wanted.get(name)!));
    opts.onEvent?.({ type: "facts", host: name });
  });
  const errs = failures(gathered);
  if (errs.length) throw errs.length === 1 ? errs[0]! : new FmcError("FACTS", errs.map((e) => e.message).join("\n"));
  const changes: Change[] = [];
  for (const phase of phases) {
    for (const h of phase.hosts(pc)) {
      const f = facts.get(h.name);
      if (f) changes.push(...phase.plan(pc, h, f));
    }
  }
  return { phases, changes, facts, skippedHosts: [...skipped] };
}

export async function apply(p: Plan, transports: ReadonlyMap<string, Transport>, opts: { concurrency: number; onEvent?: (e: Event) => void }): Promise<void> {
  for (const phase of p.phases) {
    const byHost = new Map<string, Change[]>();
    for (const c of p.changes.filter((x) => x.phase === phase.name)) byHost.set(c.host, [...(byHost.get(c.host) ?? []), c]);
    if (byHost.size === 0) continue;
    opts.onEvent?.({ type: "phase", phase: phase.name, hosts: byHost.size });
    const results = await pool([...byHost], opts.concurrency, async ([host, changes]) => {
      const t = transports.get(host)!;
      for (const change of changes) {
        opts.onEvent?.({ type: "change", change });
        const started = performance.now();
        for (const command of change.commands) {
          const step = `${phase.name}: ${change.title}`;
          const r = await t.exec(command, step);
          if (r.code !== 0) {
            throw new FmcError("APPLY_FAILED", `${host}: ${step} failed (exit ${r.code})${r.stderr.trim() ? `:\n${r.stderr.trim()}` : ""}`);
          }
        }
        opts.onEvent?.({ type: "done", change, ms: performance.now() - started });
      }
    });
    const errs = failures(results);
    if (errs.length) {
      throw new FmcError(
        errs.length === 1 && errs[0] instanceof FmcError ? errs[0].code : "APPLY_FAILED",
        `apply stopped in phase ${phase.name}:\n${errs.map((e) => `  ${e.message}`).join("\n")}`,
        "later phases did not run; fix the cause and run fmc apply again: finished changes are not repeated",
      );
    }
  }
}
