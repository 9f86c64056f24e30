// A traffic probe for the lab: requests in a tight loop from a lab host (or the internet
// namespace), each with short time limits so one lost SYN costs a fraction of a second,
// and the outage windows read back from its log. Used by the failover tests and by
// bench/failover.ts.
import { spawn } from "node:child_process";
import { labExecCommand } from "./lab.js";
import { quote } from "../shell.js";

export interface ProbeOptions {
  /** Where the requests come from: a lab host's name or "internet". */
  readonly from: string;
  /** curl arguments naming the request (URL, --resolve, --cacert …). */
  readonly curl: readonly string[];
  /** Pause between requests. */
  readonly everyMs?: number;
  /** Per-request limit: connecting, and the whole request. */
  readonly connectTimeoutS?: number;
  readonly maxTimeS?: number;
}

export interface ProbeResult {
  readonly requests: number;
  readonly failed: number;
  /** Each outage: from the start of the first failed request to the start of the next good one. */
  readonly windows: ReadonlyArray<{ startMs: number; ms: number; failed: number }>;
  /** What answered, per answer line (e.g. which backend), counted. */
  readonly answers: ReadonlyMap<string, number>;
}

/** The shell loop run inside the host: one line per request, "start-ms ok|fail first-line". */
function probeScript(o: ProbeOptions): string {
  const curl = ["curl", "-s", "--connect-timeout", String(o.connectTimeoutS ?? 0.25), "-m", String(o.maxTimeS ?? 0.5), ...o.curl].map(quote).join(" ");
  const pause = ((o.everyMs ?? 20) / 1000).toFixed(3);
  return `trap 'exit 0' TERM INT; while :; do t=$(date +%s%3N); if out=$(${curl} 2>/dev/null); then echo "$t ok $(printf '%s' "$out" | head -n1)"; else echo "$t fail"; fi; sleep ${pause}; done`;
}

function analyse(log: string): ProbeResult {
  const rows = log
    .split("\n")
    .map((l) => /^(\d+) (ok|fail)(?: (.*))?$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => ({ t: Number(m[1]), ok: m[2] === "ok", answer: m[3] ?? "" }));
  const windows: Array<{ startMs: number; ms: number; failed: number }> = [];
  const answers = new Map<string, number>();
  let open: { startMs: number; failed: number } | undefined;
  for (const r of rows) {
    if (r.ok) {
      answers.set(r.answer, (answers.get(r.answer) ?? 0) + 1);
      if (open) windows.push({ startMs: open.startMs, ms: r.t - open.startMs, failed: open.failed });
      open = undefined;
    } else if (open) open.failed++;
    else open = { startMs: r.t, failed: 1 };
  }
  // a window still open at the end lasts until the last request
  if (open) windows.push({ startMs: open.startMs, ms: rows[rows.length - 1]!.t - open.startMs, failed: open.failed });
  return { requests: rows.length, failed: rows.filter((r) => !r.ok).length, windows, answers };
}

/** Starts the probe; stop() ends it and returns what it saw. */
export function startProbe(o: ProbeOptions): { stop(): Promise<ProbeResult> } {
  // its own process group: stop() signals the loop inside the host, past nsenter
  const [program, ...rest] = labExecCommand(o.from, ["bash", "-c", probeScript(o)]);
  const child = spawn(program!, rest, { stdio: ["ignore", "pipe", "ignore"], detached: true });
  let log = "";
  child.stdout.on("data", (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  return {
    async stop() {
      const signal = (sig: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, sig);
        } catch {
          // already gone
        }
      };
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
      return analyse(log);
    },
  };
}

/** The longest outage of a probe run, in ms (0 when nothing failed). */
export const longestWindow = (r: ProbeResult) => Math.max(0, ...r.windows.map((w) => w.ms));
