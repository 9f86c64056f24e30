// A guarded command: runs only when its guard (a shell test read with the facts) fails,
// like `creates=` / `unless=` in other tools, so re-runs converge.
import { script } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, ChangeSite } from "./change.js";

export interface GuardedSpec {
  readonly id: string;
  readonly title: string;
  /** Shell test; exit 0 means "already done". */
  readonly unless: string;
  readonly run: string;
  readonly notes?: readonly string[];
}

export function guardedChange(facts: HostFacts, g: GuardedSpec, ctx: ChangeSite): Change | undefined {
  const code = facts.guards.get(g.id);
  if (code === 0) return undefined;
  return { host: ctx.host, phase: ctx.phase, title: g.title, commands: [script(g.run, g.title)], notes: [...(g.notes ?? [])] };
}

export const guardFacts = (g: GuardedSpec) => ({ guards: new Map([[g.id, g.unless]]) });
