// How commands reach a host. The SSH transport is the real one; the recording
// transport answers from a script of replies, for engine tests without hosts.
import type { Command } from "./command.js";

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Transport {
  /** The host's name in the spec, for error messages. */
  readonly host: string;
  exec(command: Command, step: string): Promise<ExecResult>;
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
