import type { Command } from "../hosts/command.js";

/** Replaces secret values in text (diffs, notes, remote errors) with masks naming them. */
export type Masker = (text: string) => string;

/** Which host and phase a planned change belongs to (every Change carries both). */
export interface ChangeSite {
  readonly host: string;
  readonly phase: string;
}

/** What an operation plans its changes with: where they belong, and the masker for what they show. */
export interface OpContext extends ChangeSite {
  readonly mask: Masker;
}

/** A file as a host should have it (written by ops/file.ts). */
export interface FileSpec {
  readonly path: string;
  readonly content: string;
  readonly mode?: number;
  readonly owner?: string;
  readonly group?: string;
  /** A check command; %s is replaced by the candidate file's path. */
  readonly validate?: string;
  readonly secret?: boolean;
}

/** One planned change on one host: what it does, the commands, and what to watch. */
export interface Change {
  readonly host: string;
  readonly phase: string;
  readonly title: string;
  readonly commands: readonly Command[];
  /** Unified diff for file changes, secrets masked. */
  readonly diff?: string;
  /** Risk notes: restarts, VIP moves, skipped settings. */
  readonly notes: readonly string[];
  /** The file this change replaces, so services can reload after it. */
  readonly path?: string;
  /** For file changes: the desired file (exports, e.g. to an Ansible playbook). */
  readonly file?: FileSpec;
  /**
   * Running it changes what the facts say beyond its own target (a package install
   * adds files, units and started services): apply re-reads the host's facts after it
   * and re-plans the rest of the phase.
   */
  readonly refreshesFacts?: boolean;
  /**
   * A change that could cut fmc off the host (firewall rules): its commands arm a revert
   * on the host first, and apply keeps it only if a brand-new SSH connection then gets
   * through and runs `cancel`; otherwise the host reverts by itself after `timeoutS`.
   */
  readonly confirm?: ConfirmSpec;
  /** Runs on this machine once the change's commands succeeded: records state (the K3s bootstrap marker). */
  readonly after?: () => void;
}

export interface ConfirmSpec {
  /** Run over a new connection after the change: disarms the revert and keeps the change. */
  readonly cancel: Command;
  /** Seconds after the change's first command when the host reverts unless cancelled. */
  readonly timeoutS: number;
  /** What reverts, a plural noun read as "the new …" and "the previous …": "firewall rules (nftables table inet fmc_firewall)". */
  readonly describe: string;
  /** Exits 0 once the revert has run: read over another new connection after it should have. */
  readonly reverted?: Command;
  /** The fix hint when the change was reverted. */
  readonly hint?: string;
}
