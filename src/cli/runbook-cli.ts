// How a day-2 command carries out its runbook: the whole order printed first (all of it with
// --plan, which stops there, read-only and unlocked as fmc plan is), the hosts lock that
// apply takes too (the state directory's hosts.lock and a lock on every host it reaches: no
// apply nor other runbook runs meanwhile, from this machine or another) taken before the one
// confirmation (--yes skips it), progress per step on stderr, and a stop at the first failure
// that says what ran and what did not.
import { FmcError } from "../errors.js";
import type { Transport } from "../hosts/transport.js";
import { commandLine } from "../state/lock.js";
import { runRunbook, runbookText, stoppedText, type RunbookStep } from "../runbooks/runbook.js";
import { lockHosts } from "../engine/hosts-lock.js";
import { confirm, dim, lockReport } from "./ui.js";

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
  /** The state directory whose hosts lock is held while it runs (with a lock on each of `transports`' hosts). */
  readonly stateDir: string;
  /** The operation's name in the lock and in another command's refusal: "node remove". */
  readonly what: string;
  /** Masks secrets in the command line the locks record (the session's pc.mask). */
  readonly mask?: (text: string) => string;
}

/** Prints, asks and runs; throws STOPPED (exit 1) at the first failed step. Resolves false when the user said no. */
export async function carryOut(o: CarryOut): Promise<boolean> {
  process.stdout.write(runbookText(o.heading, o.steps));
  if (o.plan) return false;
  // before the question: nobody is asked to confirm what another fmc would refuse
  const lock = await lockHosts({ stateDir: o.stateDir, transports: o.transports, what: o.what, command: commandLine(o.mask), report: lockReport });
  try {
    if (!o.yes && !(await confirm(`${o.question} [y/N] `, `fmc ${o.what} changes the cluster`))) {
      process.stderr.write("nothing done\n");
      return false;
    }
    const t0 = performance.now();
    const out = await runRunbook(o.steps, o.transports, (line) => process.stderr.write(`${dim(line)}\n`));
    if (out.failed) throw new FmcError("STOPPED", stoppedText(o.steps, out), "the cluster is as the finished steps left it: fix the cause, then run the command again (its checks are read afresh)");
    process.stdout.write(`Done: ${o.steps.length} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s.\n`);
    return true;
  } finally {
    await lock.release();
  }
}
