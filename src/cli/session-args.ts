// The options every command that reaches the hosts shares (plan, apply, wireguard …),
// and their checked values.
import { FmcError } from "../errors.js";
import type { SessionOptions } from "../engine/session.js";
import { fileArg, specArg, specFileOf, stateArg } from "./ui.js";

/** The phases' names, for help text without loading them (test/unit/cli.test.ts keeps it true). */
export const PHASE_NAMES = ["firewall", "base", "wireguard", "dns", "storage", "database", "longhorn-prereqs", "loadbalancer", "k3s-servers", "k3s-agents", "edge"] as const;

export const sessionArgs = {
  spec: specArg,
  file: fileArg,
  state: stateArg,
  identity: { type: "string", alias: "i", description: "extra private key file(s), comma-separated (fmc's admin key and ssh-agent are always tried)" },
  "accept-new": { type: "boolean", description: "trust unknown host keys on first contact (changed keys are always refused)", default: false },
  jump: { type: "string", description: "reach hosts through this spec host (to change the firewall through it, firewall.management must allow it)" },
  concurrency: { type: "string", description: "hosts worked on at once", default: "16" },
  timeout: { type: "string", description: "seconds a remote command may take before it is stopped (connecting waits at most 15 s)", default: "120" },
  phase: { type: "string", description: `only these phases, comma-separated (${PHASE_NAMES.join(", ")})` },
} as const;

export type SessionArgs = { spec?: string; file?: string; state?: string; identity?: string; "accept-new"?: boolean; jump?: string; concurrency?: string; timeout?: string; phase?: string };

export function sessionOptions(a: SessionArgs): SessionOptions {
  const concurrency = Number(a.concurrency ?? 16);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024) throw new FmcError("USAGE", `--concurrency ${a.concurrency}: a whole number from 1 to 1024 please`);
  const timeout = Number(a.timeout ?? 120);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 86_400) throw new FmcError("USAGE", `--timeout ${a.timeout}: seconds, more than 0 and at most 86400 please`);
  return {
    file: specFileOf(a),
    stateDir: a.state,
    identities: a.identity?.split(",").filter(Boolean),
    acceptNew: a["accept-new"],
    jump: a.jump,
    concurrency,
    timeoutMs: Math.round(timeout * 1000),
    phases: a.phase?.split(",").filter(Boolean),
  };
}
