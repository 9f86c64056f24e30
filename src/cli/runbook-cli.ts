// How a day-2 command carries out its runbook: the whole order printed first (all of it with
// --plan, which stops there), one confirmation (--yes skips it), the state directory's lock
// so no apply runs meanwhile, progress per step on stderr, and a stop at the first failure
// that says what ran and what did not.
import { FmcError } from "../errors.js";
import type { Transport } from "../hosts/transport.js";
import { runRunbook, runbookText, stoppedText, type RunbookStep } from "../ops/runbook.js";
import { acquireLock } from "../state/lock.js";
import { confirm, dim } from "./ui.js";

export interface CarryOut {
  readonly heading: string;
  readonly steps: readonly RunbookStep[];
  readonly transports: ReadonlyMap<string, Transport>;
  /** --plan: print and stop. */
  readonly plan: boolean;
  /** --yes: do not ask. */
  readonly yes: boolean;
  /** The question, e.g. "Remove master2 from the cluster?" */
  readonly question: string;
  /** The state directory whose lock is held while it runs. */
  readonly stateDir: string;
  /** The operation's name for the lock and the refusal: "node remove". */
  readonly what: string;
}

/** Prints, asks and runs; throws STOPPED (exit 1) at the first failed step. Resolves false when the user said no. */
export async function carryOut(o: CarryOut): Promise<boolean> {
  process.stdout.write(runbookText(o.heading, o.steps));
  if (o.plan) return false;
  if (!o.yes && !(await confirm(`${o.question} [y/N] `, `fmc ${o.what} changes the cluster`))) {
    process.stderr.write("nothing done\n");
    return false;
  }
  const lock = acquireLock(o.stateDir, o.what);
  try {
    const t0 = performance.now();
    const out = await runRunbook(o.steps, o.transports, (line) => process.stderr.write(`${dim(line)}\n`));
    if (out.failed) throw new FmcError("STOPPED", stoppedText(o.steps, out), "the cluster is as the finished steps left it: fix the cause, then run the command again (its checks are read afresh)");
    process.stdout.write(`Done: ${o.steps.length} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s.\n`);
    return true;
  } finally {
    lock.release();
  }
}
