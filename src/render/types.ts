import type { ClusterContext } from "../state/context.js";

/** One rendered file. Paths are relative to the output directory, with "/" separators. */
export interface Artifact {
  readonly path: string;
  readonly content: string;
  /** Holds secret values: written 0600 and never meant for version control. */
  readonly secret?: boolean;
  /** Executable script (0755, or 0700 when secret). */
  readonly executable?: boolean;
}

/** Renderers read the cluster's context, defined with the state it carries (src/state/context.ts). */
export type { ClusterContext } from "../state/context.js";

/** A renderer is a pure function: same context, same artifacts, byte for byte. */
export type Renderer = (ctx: ClusterContext) => Artifact[];

/** Joins lines and ends the file with one newline. */
export function lines(...parts: Array<string | false | undefined | null | string[]>): string {
  const out: string[] = [];
  for (const p of parts) {
    if (p === false || p === undefined || p === null) continue;
    if (Array.isArray(p)) out.push(...p);
    else out.push(p);
  }
  return out.join("\n").replace(/\n*$/, "\n");
}

export const HEADER_TEXT = "Rendered by fmc from the cluster spec. Edit the spec, not this file.";
/** The header line in a file's own comment syntax. */
export const HEADER = (comment: string) => `${comment} ${HEADER_TEXT}`;
