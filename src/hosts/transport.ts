// How commands reach a host. The SSH transport is the real one; the recording
// transport answers from a script of replies, for engine tests without hosts.
import type { Command } from "./command.js";

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Streams for a command whose input or output is too large to hold in memory (backups). */
export interface StreamIo {
  /** Fed to the command's standard input, which is closed at its end. */
  readonly stdin?: NodeJS.ReadableStream;
  /** Receives the command's standard output (ended with it). */
  readonly stdout?: NodeJS.WritableStream;
  /** The command's time limit; the transport's own per-command limit otherwise. */
  readonly timeoutMs?: number;
}

export interface Transport {
  /** The host's name in the spec, for error messages. */
  readonly host: string;
  exec(command: Command, step: string): Promise<ExecResult>;
  /** Runs a command with streamed input/output; resolves once both are done. Transports without it cannot move backups. */
  stream?(command: Command, step: string, io: StreamIo): Promise<{ code: number; stderr: string }>;
  close(): void;
}

export type Responder = (command: Command) => ExecResult | undefined;

/** Records every command; answers with the first responder that knows it. */
export class RecordingTransport implements Transport {
  readonly log: Command[] = [];
  constructor(
    readonly host: string,
    private readonly responders: Responder[] = [],
  ) {}

  async exec(command: Command): Promise<ExecResult> {
    this.log.push(command);
    for (const r of this.responders) {
      const res = r(command);
      if (res) return res;
    }
    return { code: 0, stdout: "", stderr: "" };
  }

  close(): void {}
}
