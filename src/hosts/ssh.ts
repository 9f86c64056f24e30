// SSH transport on ssh2: one connection per host for the whole run, TCP_NODELAY (ssh2's
// small writes otherwise wait on Nagle + delayed ACK, ≈40 ms per command), host keys
// checked against a known_hosts file, an optional jump host, sudo for non-root users,
// and errors that name the host and the step.
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { connect as tcpConnect, type Socket } from "node:net";
import ssh2 from "ssh2";
import { quote, type Command } from "./command.js";
import type { ExecResult, Transport } from "./transport.js";
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
  readonly connectTimeoutMs?: number;
  readonly commandTimeoutMs?: number;
}

const hostLabel = (t: SshTarget) => (t.port === 22 ? t.address : `[${t.address}]:${t.port}`);

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
    const fail = (e: Error) => {
      client.end();
      const msg = hostKeyError ?? e.message;
      reject(new FmcError("SSH_CONNECT", `${target.name}: cannot connect to ${target.user}@${hostLabel(target)}: ${msg}`, hostKeyError ? undefined : "is the host up and is sshd listening? (fmc lab status for lab hosts)"));
    };
    client.once("ready", () => resolve(client)).once("error", fail);
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
      readyTimeout: opts.connectTimeoutMs ?? 15_000,
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
    if (!opts.jump) return new SshTransport(target.name, target, await openClient(target, opts), undefined, opts);
    const jump = await openClient(opts.jump, opts);
    const stream = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
      jump.forwardOut("127.0.0.1", 0, target.address, target.port, (err, ch) => (err ? reject(new FmcError("SSH_JUMP", `${target.name}: jump host ${opts.jump!.name} cannot reach ${hostLabel(target)}: ${err.message}`)) : resolve(ch))),
    );
    return new SshTransport(target.name, target, await openClient(target, opts, stream), jump, opts);
  }

  exec(command: Command, step: string): Promise<ExecResult> {
    if (this.lost) return Promise.reject(this.lostError(step));
    const wrapped = this.target.user === "root" ? command.shell : `sudo -n -- bash -c ${quote(command.shell)}`;
    return new Promise((resolve, reject) => {
      const timeoutMs = this.opts.commandTimeoutMs ?? 120_000;
      // Exactly one of: the result, a timeout, a lost connection. settle() ends the rest.
      let done = false;
      const settle = (outcome: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.client.off("close", onClose);
        outcome();
      };
      const timer = setTimeout(() => settle(() => reject(new FmcError("SSH_TIMEOUT", `${this.host}: ${step} did not finish within ${timeoutMs / 1000} s`))), timeoutMs);
      const onClose = () => settle(() => reject(this.lostError(step)));
      this.client.once("close", onClose);
      this.client.exec(wrapped, (err, stream) => {
        if (err) return settle(() => reject(this.lost ? this.lostError(step) : new FmcError("SSH_EXEC", `${this.host}: ${step}: ${err.message}`)));
        const out: Buffer[] = [];
        const errs: Buffer[] = [];
        stream.on("data", (d: Buffer) => out.push(d));
        stream.stderr.on("data", (d: Buffer) => errs.push(d));
        stream.on("close", (code: number | null) =>
          settle(() =>
            code === null || code === undefined
              ? reject(this.lostError(step))
              : resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(errs).toString("utf8") }),
          ),
        );
        if (command.stdin !== undefined) stream.end(command.stdin);
        else stream.end();
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
