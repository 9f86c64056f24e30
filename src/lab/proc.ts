// Processes of the lab (containers' nspawn, VMs' QEMU), read from /proc: one reading of
// "still running" and of a command line for both.
import { readFileSync } from "node:fs";

/** Alive and not a zombie (kill -0 succeeds on zombies). */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** A process's argv; empty when it is gone. */
export function cmdlineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
