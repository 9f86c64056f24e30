import type { Spec } from "../model/schema.js";
import type { Topology } from "../model/topology.js";
import type { Secrets } from "../state/secrets.js";

/** One rendered file. Paths are relative to the output directory, with "/" separators. */
export interface Artifact {
  readonly path: string;
  readonly content: string;
  /** Holds secret values: written 0600 and never meant for version control. */
  readonly secret?: boolean;
  /** Executable script (0755, or 0700 when secret). */
  readonly executable?: boolean;
}

export interface RenderContext {
  readonly spec: Spec;
  readonly topo: Topology;
  readonly secrets: Secrets;
  /** The K3s cluster exists (state marker, src/state/bootstrap.ts): no server renders cluster-init. */
  readonly k3sBootstrapped?: boolean;
}

/** A renderer is a pure function: same context, same artifacts, byte for byte. */
export type Renderer = (ctx: RenderContext) => Artifact[];

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
