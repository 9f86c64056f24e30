// A host played by this machine's bash: each command runs for real (its stdin fed as the SSH
// transport feeds it), with the host's /run moved into a temporary directory, so the scripts
// that lock a host run as they would there. Every command is logged.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "../src/hosts/command.js";
import type { ExecResult, Transport } from "../src/hosts/transport.js";

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
