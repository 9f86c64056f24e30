// A session: the spec's context, where its hosts are, and one SSH connection per host
// (through one shared connection to the jump host, if any), closed at the end whatever
// happens. A host that can't be reached does not stop the others: it is recorded. A command
// that changes hosts takes the session's hosts lock first (lockHosts: the state directory's
// and each connected host's); read-only commands (plan, status) don't.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { k3sBundleDir, readBundle, type K3sBundle } from "../local/bundle.js";
import { isK3sBootstrapped, forgetK3sBootstrap, markK3sBootstrapped } from "../state/bootstrap.js";
import type { K3sRun } from "../phases/phase.js";
import { context, MAX_KEY_FILE_BYTES } from "../project.js";
import { readSmallTextFile } from "../files.js";
import { inventory, withOverrides, type Inventory } from "./inventory.js";
import { Topology } from "../model/topology.js";
import { DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, openJump, SshTransport, type SshOptions } from "../hosts/ssh.js";
import type { Transport } from "../hosts/transport.js";
import { PHASES, type Phase, type PhaseContext } from "../phases/index.js";
import { pool, type Reconnect } from "./run.js";
import { lockHosts, type HostsLock } from "./hosts-lock.js";
import { commandLine } from "../state/lock.js";
import type { ClusterContext } from "../state/context.js";
import type { Host } from "../model/schema.js";
import { FmcError } from "../errors.js";

export interface SessionOptions {
  readonly file?: string;
  readonly stateDir?: string;
  readonly identities?: readonly string[];
  readonly acceptNew?: boolean;
  readonly jump?: string;
  readonly concurrency?: number;
  readonly phases?: readonly string[];
  /** Per-command limit; connecting waits at most 15 s or this, whichever is less. */
  readonly timeoutMs?: number;
  /** Seconds a change that must be confirmed over a new connection (firewall rules) waits before the host reverts it. */
  readonly confirmTimeoutS?: number;
  /** Connect to these hosts instead of the ones the phases touch (day-2 commands: the K3s servers). */
  readonly hosts?: (pc: PhaseContext) => readonly Host[];
}

export interface Session {
  readonly render: ClusterContext;
  readonly pc: PhaseContext;
  readonly inventory: Inventory;
  readonly stateDir: string;
  readonly phases: readonly Phase[];
  readonly transports: Map<string, Transport>;
  /** Hosts the phases need that could not be reached, with the reason. */
  readonly unreachable: ReadonlyMap<string, string>;
  readonly concurrency: number;
  /** Brand-new connections over the session's path, for changes that must be confirmed over one. */
  readonly reconnect: Reconnect;
  /**
   * The lock of every command that changes hosts ("apply", "node remove"): the state
   * directory's hosts.lock and a lock on every connected host, refreshed until released.
   * Throws LOCKED or HOST_LOCKED naming the holder.
   */
  lockHosts(what: string, report?: (line: string) => void): Promise<HostsLock>;
  close(): void;
}

/** How long a confirming connection may take to open (the first one of a run may take 15 s). */
const RECONNECT_TIMEOUT_MS = 5_000;

export function selectPhases(names?: readonly string[]): Phase[] {
  if (!names?.length) return [...PHASES];
  const unknown = names.filter((n) => !PHASES.some((p) => p.name === n));
  if (unknown.length) throw new FmcError("USAGE", `unknown phase ${unknown[0]}`, `phases: ${PHASES.map((p) => p.name).join(", ")}`);
  return PHASES.filter((p) => names.includes(p.name));
}

/** The edge's origin certificate and key, when both files exist. */
function readOriginCertificate(inv: Inventory): { cert: string; key: string } | undefined {
  const files = inv.originCertificate;
  if (!files || !existsSync(files.cert) || !existsSync(files.key)) return undefined;
  return { cert: readSmallTextFile(files.cert, "origin certificate", MAX_KEY_FILE_BYTES), key: readSmallTextFile(files.key, "origin certificate key", MAX_KEY_FILE_BYTES) };
}

/** Minutes a bootstrap token made by apply lives: long enough for a slow join, short enough to be worthless soon. */
const JOIN_TOKEN_TTL_MIN = 60;

/** Where a bootstrap token's 6 + 16 characters come from ([a-z0-9], as kubeadm's). */
export function newBootstrapToken(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  // 252 = 7 × 36: bytes above it are skipped so every character is equally likely
  const out: string[] = [];
  while (out.length < 22) for (const b of randomBytes(32)) if (b < 252 && out.length < 22) out.push(alphabet[b % 36]!);
  return `${out.slice(0, 6).join("")}.${out.slice(6).join("")}`;
}

function k3sRun(ctx: ClusterContext, stateDir: string, markerDir: string, source: "spec" | "lab"): K3sRun {
  const version = ctx.spec.k3s.version;
  const dir = k3sBundleDir(stateDir, version, source);
  let bundle: K3sBundle | undefined | null = null;
  return {
    bundle: () => {
      if (bundle === null) bundle = existsSync(dir) ? readBundle(dir, version) : undefined;
      return bundle;
    },
    // the lab's nodes have no route out: without its stand-in bundle there is nothing to install
    ...(source === "lab" && !existsSync(dir) ? { unavailable: "the lab has no K3s stand-in (it needs etcd-server and etcd-client on this machine, and the lab's k3s-server hosts): the K3s phases plan nothing" } : {}),
    joinToken: newBootstrapToken(),
    joinTokenTtlMin: JOIN_TOKEN_TTL_MIN,
    markBootstrapped: (first) => void markK3sBootstrapped({ path: markerDir }, ctx.spec.name, first),
    forgetBootstrap: () => forgetK3sBootstrap({ path: markerDir }),
  };
}

export async function openSession(o: SessionOptions): Promise<Session> {
  const loaded = context({ file: o.file, stateDir: o.stateDir });
  const stateDir = loaded.stateDir;
  const inv = inventory(loaded.ctx.spec, stateDir);
  // against the lab, the lab's stand-ins replace what can't run on its machine
  const spec = withOverrides(loaded.ctx.spec, inv.overrides);
  // the lab's cluster is not the real one: its bootstrap record lives (and dies) with the lab
  const markerDir = inv.source === "lab" ? join(stateDir, "lab") : stateDir;
  const labBoot = inv.source === "lab" ? { k3sBootstrapped: isK3sBootstrapped({ path: markerDir }, loaded.ctx.spec.name) } : {};
  const ctx: ClusterContext = spec === loaded.ctx.spec && inv.source !== "lab" ? loaded.ctx : { ...loaded.ctx, ...labBoot, spec, topo: new Topology(spec, loaded.ctx.topo.sshKeys) };
  const phases = selectPhases(o.phases);
  const k3s = k3sRun(ctx, stateDir, markerDir, inv.source);
  const pc: PhaseContext = {
    render: ctx,
    // the join token made for this run is a secret like the stored ones
    mask: (t) => ctx.secrets.mask(t).replaceAll(k3s.joinToken, "<secret:k3s-bootstrap-token>"),
    k3s,
    loginUser: (h) => inv.targets.get(h.name)?.user ?? ctx.topo.sshUser(h),
    confirmTimeoutS: o.confirmTimeoutS,
    originCertificate: readOriginCertificate(inv),
  };
  const keys = [
    ...(o.identities ?? []).map((f) => readFileSync(resolve(f.replace(/^~\//, `${homedir()}/`)), "utf8")),
    ...(ctx.secrets.adminPrivateKey() ? [ctx.secrets.adminPrivateKey()!] : []),
  ];
  const jumpHost = o.jump ? inv.targets.get(o.jump) : undefined;
  if (o.jump && !jumpHost) throw new FmcError("USAGE", `--jump ${o.jump}: no such host`);
  const timeoutMs = o.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const base: SshOptions = {
    privateKeys: keys,
    agent: process.env.SSH_AUTH_SOCK,
    knownHostsFile: inv.knownHostsFile,
    acceptNew: o.acceptNew,
    jump: jumpHost,
    connectTimeoutMs: Math.min(DEFAULT_CONNECT_TIMEOUT_MS, timeoutMs),
    commandTimeoutMs: timeoutMs,
    mask: pc.mask,
  };
  // one connection to the jump host, shared: one per target would exceed sshd's MaxStartups
  const via = jumpHost ? await openJump(jumpHost, base) : undefined;
  const sshOptions: SshOptions = { ...base, via };
  // a phase's peers too: their facts are part of its plan (agents pin a server's CA)
  const wanted = new Set((o.hosts ? o.hosts(pc) : phases.flatMap((p) => [...p.hosts(pc), ...(p.peers?.(pc) ?? [])])).map((h) => h.name));
  const targets = [...inv.targets.values()].filter((t) => wanted.has(t.name));
  const concurrency = o.concurrency ?? 16;
  const transports = new Map<string, Transport>();
  const unreachable = new Map<string, string>();
  await pool(targets, concurrency, async (t) => {
    try {
      transports.set(t.name, await SshTransport.connect(t, sshOptions));
    } catch (e) {
      unreachable.set(t.name, pc.mask((e as Error).message));
    }
  });
  // a change that could cut fmc off (firewall rules) is confirmed over a brand-new
  // connection that gives up quickly: a host whose new rules drop SSH never answers.
  // Brand-new all the way: through a jump host, a fresh jump connection too (the shared
  // one is already open and proves nothing about the path)
  const reconnect: Reconnect = {
    open: (host) => {
      const t = inv.targets.get(host);
      if (!t) return Promise.reject(new FmcError("SSH_CONNECT", `${host}: not in the ${inv.source} inventory`));
      if (jumpHost?.name === host) {
        return Promise.reject(new FmcError("SSH_JUMP", `${host} is the jump host: a connection that starts on it cannot prove the path from here`, `confirm changes to ${host} without --jump ${host}`));
      }
      return SshTransport.connect(t, { ...base, via: undefined, connectTimeoutMs: RECONNECT_TIMEOUT_MS, commandTimeoutMs: Math.min(timeoutMs, 30_000) });
    },
    where: (host) => {
      const t = inv.targets.get(host);
      return t ? `${t.address}:${t.port}` : "address unknown";
    },
  };
  const close = () => {
    transports.forEach((t) => t.close());
    via?.end();
  };
  if (transports.size === 0 && unreachable.size > 0) {
    close();
    throw new FmcError("SSH_CONNECT", [...unreachable.values()].join("\n"), inv.source === "lab" ? "is the lab up? fmc lab status" : "check addresses, keys (-i) and known_hosts (--accept-new on first contact)");
  }
  const lock = (what: string, report?: (line: string) => void) => lockHosts({ stateDir, transports, what, command: commandLine(pc.mask), report });
  return { render: ctx, pc, inventory: inv, stateDir, phases, transports, unreachable, concurrency, reconnect, lockHosts: lock, close };
}
