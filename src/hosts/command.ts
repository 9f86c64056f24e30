// Commands are values, not strings glued by hand: arguments are quoted in one place (src/shell.ts),
// and secret parts are marked so that plans and logs show a mask instead.
import { quote } from "../shell.js";

export interface SecretPart {
  readonly secret: string;
  readonly name: string;
}
export type Part = string | SecretPart;

export interface Command {
  /** What the remote shell runs, with real values. */
  readonly shell: string;
  /** What people see: secrets masked, long stdin summarised. */
  readonly display: string;
  /** Data fed to the command's standard input. */
  readonly stdin?: string;
  /** Whether stdin holds a secret (never shown). */
  readonly stdinSecret?: boolean;
  /** A local file streamed to the command's standard input instead (a binary too big for a string). */
  readonly upload?: string;
  /**
   * Slow by nature (a package install on a small VM): it may take at least this many
   * seconds, whatever the session's --timeout says.
   */
  readonly slowS?: number;
}

/** The same command, allowed at least `seconds` to finish. */
export const slow = (c: Command, seconds: number): Command => ({ ...c, slowS: Math.max(seconds, c.slowS ?? 0) });

/** A script fed the contents of a local file on its standard input. */
export function uploadScript(body: string, display: string, localFile: string): Command {
  return { shell: body, display, upload: localFile };
}

/** A program and its arguments, each quoted. */
export function cmd(...parts: Part[]): Command {
  return {
    shell: parts.map((p) => quote(typeof p === "string" ? p : p.secret)).join(" "),
    display: parts.map((p) => (typeof p === "string" ? quote(p) : `<secret:${p.name}>`)).join(" "),
  };
}

/** A shell script we wrote ourselves; `display` says what it does in a few words. */
export function script(body: string, display: string, stdin?: { data: string; secret?: boolean }): Command {
  return { shell: body, display, stdin: stdin?.data, stdinSecret: stdin?.secret };
}

export function secret(value: string, name: string): SecretPart {
  return { secret: value, name };
}
