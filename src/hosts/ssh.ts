// SSH transport on ssh2: one connection per host for the whole run, TCP_NODELAY (ssh2's
// small writes otherwise wait on Nagle + delayed ACK, ≈40 ms per command), host keys
// checked against a known_hosts file, one shared connection to a jump host, sudo for
// non-root users, a timeout that ends the remote process too, bounded output, remote
// error output masked, and errors that name the host and the step.
import { appendFileSync, createReadStream, existsSync, readFileSync } from "node:fs";
import { connect as tcpConnect, type Socket } from "node:net";
import ssh2 from "ssh2";
import { quote } from "../shell.js";
import type { Command } from "./command.js";
import { pipeline } from "node:stream/promises";
import type { ExecResult, StreamIo, Transport } from "./transport.js";
import { FmcError } from "../errors.js";

export interface SshTarget {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly user: string;
}

export interface SshOptions {
  /** OpenSSH private keys to offer, in order. */
  readonly privateKeys: readonly string[];
  /** Use the ssh-agent at SSH_AUTH_SOCK as well. */
  readonly agent?: string;
  readonly knownHostsFile: string;
  /** Add unknown host keys to known_hosts instead of refusing them. Changed keys are always refused. */
  readonly acceptNew?: boolean;
  readonly jump?: SshTarget;
  /** An open connection to the jump host, shared by every target (see openJump). */
  readonly via?: ssh2.Client;
  readonly connectTimeoutMs?: number;
  readonly commandTimeoutMs?: number;
  /** Largest stdout a command may produce; beyond it the command is stopped. */
  readonly maxOutputBytes?: number;
  /** Applied to remote error output before it reaches an error message or a log. */
  readonly mask?: (text: string) => string;
  /**
   * A connection that has not answered after `afterMs` is announced once through `say`,
   * so a host that does not answer is not a silent wait of up to connectTimeoutMs.
   * Default: after 2 s, a line on stderr; false: silent.
   */
  readonly slowConnect?: { readonly afterMs: number; readonly say: (line: string) => void } | false;
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 120_000;
/** The longest fmc waits for a connection (or a channel through the jump host). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
const DEFAULT_MAX_OUTPUT = 32 * 1024 * 1024;
const MAX_STDERR = 256 * 1024;
/** Grace the remote `timeout` gives a command after fmc gave up, before it kills the group. */
const REMOTE_GRACE_S = 5;

const hostLabel = (t: SshTarget) => (t.port === 22 ? t.address : `[${t.address}]:${t.port}`);

/** When a connection that has not answered yet is announced (SshOptions.slowConnect). */
export const SLOW_CONNECT_MS = 2_000;
const DEFAULT_SLOW_CONNECT = { afterMs: SLOW_CONNECT_MS, say: (line: string) => void process.stderr.write(`${line}\n`) };

/** Announces a wait that lasts longer than slowConnect.afterMs; returns what ends the wait. */
function noticeIfSlow(opts: SshOptions, line: () => string): () => void {
  const notice = opts.slowConnect ?? DEFAULT_SLOW_CONNECT;
  if (!notice) return () => undefined;
  const timer = setTimeout(() => notice.say(line()), notice.afterMs);
  timer.unref();
  return () => clearTimeout(timer);
}

/** "[web1] connecting to root@10.0.0.5 … (no answer yet; giving up after 15 s)" */
function connectingLine(target: SshTarget, opts: SshOptions, via?: string): string {
  const limit = (opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) / 1000;
  return `[${target.name}] connecting to ${target.user}@${hostLabel(target)}${via ? ` through ${via}` : ""}… (no answer yet; giving up after ${limit} s)`;
}

/** Checks a presented host key against known_hosts; returns an error text or undefined. */
function verifyHostKey(target: SshTarget, key: Buffer, opts: SshOptions): string | undefined {
  const label = hostLabel(target);
  const parsed = ssh2.utils.parseKey(key);
  if (parsed instanceof Error) return `cannot parse the host key of ${target.name}: ${parsed.message}`;
  const type = parsed.type;
  const blob = key.toString("base64");
  const lines = existsSync(opts.knownHostsFile) ? readFileSync(opts.knownHostsFile, "utf8").split("\n") : [];
  const known = lines
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 3 && f[0]!.split(",").includes(label));
  if (known.some((f) => f[1] === type && f[2] === blob)) return undefined;
  if (known.some((f) => f[1] === type)) {
    return `HOST KEY CHANGED for ${target.name} (${label}): refusing to connect. If the host was rebuilt, remove its line from ${opts.knownHostsFile}`;
  }
  if (!opts.acceptNew) return `unknown host key for ${target.name} (${label}); run with --accept-new to trust it on first use`;
  appendFileSync(opts.knownHostsFile, `${label} ${type} ${blob}\n`, { mode: 0o600 });
  return undefined;
}

function openClient(target: SshTarget, opts: SshOptions, sock?: NodeJS.ReadableStream & NodeJS.WritableStream): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let hostKeyError: string | undefined;
    const answered = noticeIfSlow(opts, () => connectingLine(target, opts));
    // ssh2 may report more than one error for one failed attempt (a timeout, then "Connection
    // lost before handshake" when the socket closes): the first decides, the rest are heard
    // and dropped (an unheard 'error' event would end the process)
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      answered();
      client.end();
      const msg = hostKeyError ?? e.message;
      reject(new FmcError("SSH_CONNECT", `${target.name}: cannot connect to ${target.user}@${hostLabel(target)}: ${msg}`, hostKeyError ? undefined : "is the host up and is sshd listening? (fmc lab status for lab hosts)"));
    };
    client
      .once("ready", () => {
        if (settled) return;
        settled = true;
        answered();
        resolve(client);
      })
      .on("error", fail);
    let socket = sock;
    if (!socket) {
      const tcp: Socket = tcpConnect({ host: target.address, port: target.port });
      tcp.setNoDelay(true);
      tcp.once("error", fail);
      socket = tcp;
    }
    client.connect({
      sock: socket as never,
      username: target.user,
      privateKey: opts.privateKeys[0],
      agent: opts.agent,
      readyTimeout: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      keepaliveInterval: 10_000,
      authHandler: authMethods(target.user, opts) as never,
      hostVerifier: (key: Buffer) => {
        hostKeyError = verifyHostKey(target, key, opts);
        return hostKeyError === undefined;
      },
    });
  });
}

/** Offers every key, then the agent. */
function authMethods(username: string, opts: SshOptions) {
  const methods: unknown[] = opts.privateKeys.map((key) => ({ type: "publickey", username, key }));
  if (opts.agent) methods.push({ type: "agent", username, agent: opts.agent });
  return methods;
}

/** One connection to the jump host for the whole run: every target is reached through it. */
export async function openJump(jump: SshTarget, opts: SshOptions): Promise<ssh2.Client> {
  const client = await openClient(jump, opts);
  // its failures reach the transports through it as lost connections; an unheard
  // 'error' event would end the process
  client.on("error", () => undefined);
  return client;
}

/**
 * The command as the remote shell runs it: under coreutils `timeout`, which puts it in a
 * process group of its own and, when signalled (fmc sends TERM on its own timeout) or
 * when its backstop expires, ends the whole group; through sudo for other users.
 */
function remoteCommand(shell: string, user: string, timeoutMs: number): string {
  const limit = `timeout --kill-after=${REMOTE_GRACE_S}s ${Math.ceil(timeoutMs / 1000) + REMOTE_GRACE_S}s bash -c ${quote(shell)}`;
  return user === "root" ? `exec ${limit}` : `exec sudo -n -- ${limit}`;
}

export class SshTransport implements Transport {
  private closed = false;
  private lost: string | undefined;

  private constructor(
    readonly host: string,
    private readonly target: SshTarget,
    private readonly client: ssh2.Client,
    private readonly jumpClient: ssh2.Client | undefined,
    private readonly opts: SshOptions,
  ) {
    client.on("close", () => {
      if (!this.closed) this.lost = "the connection closed";
    });
    client.on("error", (e) => {
      this.lost = e.message;
    });
  }

  static async connect(target: SshTarget, opts: SshOptions): Promise<SshTransport> {
    const via = opts.via ?? (opts.jump ? await openClient(opts.jump, opts) : undefined);
    if (!via) return new SshTransport(target.name, target, await openClient(target, opts), undefined, opts);
    try {
      const stream = await new Promise<ssh2.ClientChannel>((resolve, reject) => {
        const limit = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
        const answered = noticeIfSlow(opts, () => connectingLine(target, opts, `jump host ${opts.jump?.name ?? "?"}`));
        const timer = setTimeout(() => {
          answered();
          reject(new FmcError("SSH_JUMP", `${target.name}: jump host ${opts.jump?.name ?? "?"} did not open a channel to ${hostLabel(target)} within ${limit / 1000} s`));
        }, limit);
        via.forwardOut("127.0.0.1", 0, target.address, target.port, (err, ch) => {
          clearTimeout(timer);
          answered();
          if (err) reject(new FmcError("SSH_JUMP", `${target.name}: jump host ${opts.jump?.name ?? "?"} cannot reach ${hostLabel(target)}: ${err.message}`));
          else resolve(ch);
        });
      });
      // a shared jump connection belongs to the session; one of our own is closed with us
      return new SshTransport(target.name, target, await openClient(target, opts, stream), opts.via ? undefined : via, opts);
    } catch (e) {
      if (!opts.via) via.end();
      throw e;
    }
  }

  /**
   * One remote command's life on a channel: exactly one of its outcome (given by `use`),
   * a timeout, or a lost connection settles it; giving up also ends the remote process
   * (stop(): TERM reaches `timeout`, which ends the whole process group).
   */
  private run<T>(command: Command, step: string, timeoutMs: number, use: (ch: ssh2.ClientChannel, stop: () => void, settle: (outcome: () => void) => void, resolve: (v: T) => void, reject: (e: Error) => void) => void): Promise<T> {
    if (this.lost) return Promise.reject(this.lostError(step));
    const wrapped = remoteCommand(command.shell, this.target.user, timeoutMs);
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let channel: ssh2.ClientChannel | undefined;
      const stop = () => {
        if (!channel) return;
        try {
          channel.signal("TERM");
        } catch {
          // the channel is already gone
        }
        channel.close();
      };
      const settle = (outcome: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.client.off("close", onClose);
        outcome();
      };
      const timer = setTimeout(() => {
        stop();
        settle(() => reject(new FmcError("SSH_TIMEOUT", `${this.host}: ${step} did not finish within ${timeoutMs / 1000} s; it was stopped`, "raise --timeout if this step is slow by nature")));
      }, timeoutMs);
      const onClose = () => settle(() => reject(this.lostError(step)));
      this.client.once("close", onClose);
      this.client.exec(wrapped, (err, ch) => {
        if (err) return settle(() => reject(this.lost ? this.lostError(step) : new FmcError("SSH_EXEC", `${this.host}: ${step}: ${err.message}`)));
        channel = ch;
        if (done) return stop(); // timed out while the channel was opening
        use(ch, stop, settle, resolve, reject);
      });
    });
  }

  /** Error output, bounded: the first MAX_STDERR bytes are kept, the rest counted. */
  private collectStderr(ch: ssh2.ClientChannel): () => string {
    const errs: Buffer[] = [];
    let errBytes = 0;
    ch.stderr.on("data", (d: Buffer) => {
      if (errBytes < MAX_STDERR) errs.push(d.subarray(0, MAX_STDERR - errBytes));
      errBytes += d.length;
    });
    const mask = this.opts.mask ?? ((t: string) => t);
    return () => mask(Buffer.concat(errs).toString("utf8")) + (errBytes > MAX_STDERR ? `\n[… ${errBytes - MAX_STDERR} more bytes of error output]` : "");
  }

  exec(command: Command, step: string): Promise<ExecResult> {
    const maxOut = this.opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const timeoutMs = Math.max(this.opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, (command.slowS ?? 0) * 1000);
    return this.run<ExecResult>(command, step, timeoutMs, (ch, stop, settle, resolve, reject) => {
      const out: Buffer[] = [];
      let outBytes = 0;
      ch.on("data", (d: Buffer) => {
        outBytes += d.length;
        if (outBytes <= maxOut) return void out.push(d);
        stop();
        settle(() => reject(new FmcError("SSH_OUTPUT", `${this.host}: ${step} printed more than ${maxOut} bytes; it was stopped`)));
      });
      const stderr = this.collectStderr(ch);
      ch.on("close", (code: number | null) =>
        settle(() => (code === null || code === undefined ? reject(this.lostError(step)) : resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: stderr() }))),
      );
      if (command.stdin !== undefined) ch.end(command.stdin);
      else if (command.upload !== undefined) {
        // a command that exits early ends its input: its exit code and error output tell why
        pipeline(createReadStream(command.upload), ch).catch(() => undefined);
      } else ch.end();
    });
  }

  /**
   * Like exec, with stdin and stdout as streams (ssh2 applies backpressure both ways):
   * settles once the command exited and its output was written out. Only error output
   * is kept (bounded, masked).
   */
  stream(command: Command, step: string, io: StreamIo): Promise<{ code: number; stderr: string }> {
    return this.run<{ code: number; stderr: string }>(command, step, io.timeoutMs ?? this.opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, (ch, stop, settle, resolve, reject) => {
      const stderr = this.collectStderr(ch);
      const fail = (e: Error) => {
        stop();
        settle(() => reject(new FmcError("SSH_STREAM", `${this.host}: ${step}: ${e.message}`)));
      };
      const written = io.stdout ? pipeline(ch, io.stdout).catch((e: Error) => fail(e)) : (ch.resume(), Promise.resolve());
      // a command that exits early ends its input too: its exit code and error output tell why
      let inputError: Error | undefined;
      if (io.stdin) pipeline(io.stdin, ch).catch((e: Error) => void (inputError = e));
      else ch.end();
      ch.on("close", (code: number | null) => {
        if (code === null || code === undefined) return settle(() => reject(inputError ? new FmcError("SSH_STREAM", `${this.host}: ${step}: sending its input failed: ${inputError.message}`) : this.lostError(step)));
        if (code === 0 && inputError) return settle(() => reject(new FmcError("SSH_STREAM", `${this.host}: ${step}: sending its input failed: ${inputError!.message}`)));
        void written.then(() => settle(() => resolve({ code, stderr: stderr() })));
      });
    });
  }

  private lostError(step: string): FmcError {
    return new FmcError("SSH_LOST", `${this.host}: lost the SSH connection during ${step}${this.lost ? ` (${this.lost})` : ""}`, "nothing was half-written: files are replaced atomically; fix the host and run apply again");
  }

  close(): void {
    this.closed = true;
    this.client.end();
    this.jumpClient?.end();
  }
}
