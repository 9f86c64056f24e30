// A session: the spec's context, where its hosts are, and one SSH connection per host,
// closed at the end whatever happens.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { resolve } from "node:path";
import { context } from "../project.js";
import { inventory, type Inventory } from "./inventory.js";
import { SshTransport, type SshOptions } from "../hosts/ssh.js";
import type { Transport } from "../hosts/transport.js";
import { PHASES, type Phase, type PhaseContext } from "../phases/index.js";
import { pool } from "./run.js";
import type { RenderContext } from "../render/types.js";
import { FmcError } from "../errors.js";

export interface SessionOptions {
  readonly file?: string;
  readonly stateDir?: string;
  readonly identities?: readonly string[];
  readonly acceptNew?: boolean;
  readonly jump?: string;
  readonly concurrency?: number;
  readonly phases?: readonly string[];
}

export interface Session {
  readonly render: RenderContext;
  readonly pc: PhaseContext;
  readonly inventory: Inventory;
  readonly stateDir: string;
  readonly phases: readonly Phase[];
  readonly transports: Map<string, Transport>;
  readonly concurrency: number;
  close(): void;
}

export function selectPhases(names?: readonly string[]): Phase[] {
  if (!names?.length) return [...PHASES];
  const unknown = names.filter((n) => !PHASES.some((p) => p.name === n));
  if (unknown.length) throw new FmcError("USAGE", `unknown phase ${unknown[0]}`, `phases: ${PHASES.map((p) => p.name).join(", ")}`);
  return PHASES.filter((p) => names.includes(p.name));
}

export async function openSession(o: SessionOptions): Promise<Session> {
  const { ctx, stateDir } = context({ file: o.file, stateDir: o.stateDir });
  const inv = inventory(ctx.spec, stateDir);
  const phases = selectPhases(o.phases);
  const pc: PhaseContext = {
    render: ctx,
    mask: (t) => ctx.secrets.mask(t),
    loginUser: (h) => inv.targets.get(h.name)?.user ?? ctx.topo.sshUser(h),
  };
  const keys = [
    ...(o.identities ?? []).map((f) => readFileSync(resolve(f.replace(/^~\//, `${homedir()}/`)), "utf8")),
    ...(ctx.secrets.adminPrivateKey() ? [ctx.secrets.adminPrivateKey()!] : []),
  ];
  const jumpHost = o.jump ? inv.targets.get(o.jump) : undefined;
  if (o.jump && !jumpHost) throw new FmcError("USAGE", `--jump ${o.jump}: no such host`);
  const sshOptions: SshOptions = {
    privateKeys: keys,
    agent: process.env.SSH_AUTH_SOCK,
    knownHostsFile: inv.knownHostsFile,
    acceptNew: o.acceptNew,
    jump: jumpHost,
  };
  const wanted = new Set(phases.flatMap((p) => p.hosts(pc).map((h) => h.name)));
  const targets = [...inv.targets.values()].filter((t) => wanted.has(t.name));
  const concurrency = o.concurrency ?? 16;
  const transports = new Map<string, Transport>();
  const results = await pool(targets, concurrency, async (t) => transports.set(t.name, await SshTransport.connect(t, sshOptions)));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => (r.reason as Error).message);
  const close = () => transports.forEach((t) => t.close());
  if (failed.length) {
    close();
    throw new FmcError("SSH_CONNECT", failed.join("\n"), inv.source === "lab" ? "is the lab up? fmc lab status" : "check addresses, keys (-i) and known_hosts (--accept-new on first contact)");
  }
  return { render: ctx, pc, inventory: inv, stateDir, phases, transports, concurrency, close };
}
