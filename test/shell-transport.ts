// A host played by this machine's bash: each command runs for real (its stdin fed as the SSH
// transport feeds it), with the host's /run moved into a temporary directory, so the scripts
// that lock a host run as they would there. Every command is logged.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "../src/hosts/command.js";
import { pipeline } from "node:stream/promises";
import type { Readable, Writable } from "node:stream";
import type { ExecResult, StreamIo, Transport } from "../src/hosts/transport.js";

export class ShellTransport implements Transport {
  readonly log: Command[] = [];
  constructor(
    readonly host: string,
    /** Stands in for the host's /: its run/ holds what /run would. */
    readonly root: string,
  ) {
    mkdirSync(join(root, "run"), { recursive: true });
  }

  /** Where the host's /run/<name> is here. */
  path(name: string): string {
    return join(this.root, "run", name);
  }

  exec(command: Command): Promise<ExecResult> {
    this.log.push(command);
    const shell = command.shell.replaceAll("/run/", `${this.root}/run/`);
    return new Promise((resolve, reject) => {
      const c = spawn("bash", ["-c", shell], { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      c.stdout.on("data", (d) => (stdout += d));
      c.stderr.on("data", (d) => (stderr += d));
      c.on("error", reject);
      c.on("close", (code) => resolve({ code: code ?? 255, stdout, stderr }));
      // a command may exit without reading its input (false): that is its answer, not an error
      c.stdin.on("error", () => undefined);
      c.stdin.end(command.stdin ?? "");
    });
  }

  close(): void {}
}

/**
 * A host played by this machine's bash, each command's script rewritten by `rewrite` first
 * (paths, ports): exec and stream as the SSH transport runs them on a host.
 */
export class BashTransport implements Transport {
  constructor(
    readonly host: string,
    private readonly rewrite: (shell: string) => string,
  ) {}
  async exec(c: Command): Promise<ExecResult> {
    const r = spawnSync("bash", ["-c", this.rewrite(c.shell)], { encoding: "utf8", input: c.stdin });
    return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
  }
  stream(c: Command, _step: string, io: StreamIo): Promise<{ code: number; stderr: string }> {
    return new Promise((resolve, reject) => {
      const p = spawn("bash", ["-c", this.rewrite(c.shell)], { stdio: ["pipe", "pipe", "pipe"] });
      let stderr = "";
      p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      // as over SSH: an output side that fails stops the command; an input that fails ends
      // the command's input where it stopped (ssh2 sends EOF, then closes the channel)
      const out = io.stdout ? pipeline(p.stdout, io.stdout as Writable).catch((e: Error) => (p.kill("SIGKILL"), reject(e))) : (p.stdout.resume(), Promise.resolve());
      if (io.stdin) pipeline(io.stdin as Readable, p.stdin).catch(() => undefined);
      else p.stdin.end();
      p.on("error", reject);
      p.on("close", (code) => void out.then(() => resolve({ code: code ?? 1, stderr })));
    });
  }
  close(): void {}
}
