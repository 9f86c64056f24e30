import type { Host } from "../spec/schema.js";
import type { RenderContext } from "../render/types.js";
import type { FactRequest, HostFacts } from "../hosts/facts.js";
import type { Change } from "../ops/change.js";
import type { Masker } from "../ops/file.js";

export interface PhaseContext {
  readonly render: RenderContext;
  readonly mask: Masker;
  /** The user fmc logs in as on each host (its authorized_keys is managed). */
  readonly loginUser: (host: Host) => string;
  /** Seconds before a change confirmed over a new connection (firewall rules) reverts by itself; fmc apply --confirm-timeout. */
  readonly confirmTimeoutS?: number;
  /** The edge's origin certificate and key (PEM), when the state directory (or the lab) has one. */
  readonly originCertificate?: { readonly cert: string; readonly key: string };
}

/** One step of apply. plan() is pure: (facts, desired) -> changes; apply runs them. */
export interface Phase {
  readonly name: string;
  readonly description: string;
  /** The spec hosts this phase touches. */
  hosts(pc: PhaseContext): Host[];
  /** What it needs to know about a host. */
  facts(pc: PhaseContext, host: Host): Partial<FactRequest>;
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[];
  /** Risks of the spec's design itself (a single point of failure): every plan states them, changes or not. */
  warnings?(pc: PhaseContext): string[];
}
