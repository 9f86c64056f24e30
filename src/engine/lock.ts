// One apply at a time per cluster: an exclusive lock file in the state directory.
// A lock left by a process that no longer runs is taken over.
import { openSync, writeSync, closeSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { FmcError } from "../errors.js";

export interface Lock {
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function acquireLock(stateDir: string, what = "apply"): Lock {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, `${what}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, JSON.stringify({ pid: process.pid, started: new Date().toISOString() }));
      closeSync(fd);
      return { release: () => rmSync(path, { force: true }) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let holder: { pid: number; started: string } | undefined;
      try {
        holder = JSON.parse(readFileSync(path, "utf8"));
      } catch {
        holder = undefined; // being written right now, or garbage: treat as held
      }
      if (holder && !alive(holder.pid)) {
        rmSync(path, { force: true }); // stale: its process is gone
        continue;
      }
      throw new FmcError("LOCKED", `another fmc ${what} is running${holder ? ` (pid ${holder.pid}, since ${holder.started})` : ""}`, `wait for it to finish; if no fmc runs, remove ${path}`);
    }
  }
  throw new FmcError("LOCKED", `could not take ${path}`);
}
