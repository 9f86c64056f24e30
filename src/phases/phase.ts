import type { Host } from "../model/schema.js";
import type { ClusterContext } from "../state/context.js";
import type { FactRequest, HostFacts } from "../hosts/facts.js";
import type { Change, Masker } from "../ops/change.js";
import type { K3sBundle } from "../local/bundle.js";

export interface PhaseContext {
  readonly render: ClusterContext;
  readonly mask: Masker;
  /** The user fmc logs in as on each host (its authorized_keys is managed). */
  readonly loginUser: (host: Host) => string;
  /** Seconds before a change confirmed over a new connection (firewall rules) reverts by itself; fmc apply --confirm-timeout. */
  readonly confirmTimeoutS?: number;
  /** The edge's origin certificate and key (PEM), when the state directory (or the lab) has one. */
  readonly originCertificate?: { readonly cert: string; readonly key: string };
  /** Every host's facts, for a phase that reads other hosts' (Phase.peers); set by the engine. */
  readonly facts?: ReadonlyMap<string, HostFacts>;
  /** What the K3s phases install from and record (src/phases/k3s.ts). */
  readonly k3s?: K3sRun;
}

/** Per run: where the K3s binary comes from, the agents' join token, and the bootstrap record. */
export interface K3sRun {
  /** The air-gap bundle to upload from (checked), or undefined: nodes download the pinned release themselves. */
  bundle(): K3sBundle | undefined;
  /** A bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) made for this run: agents that join now use it. */
  readonly joinToken: string;
  /** Minutes the join token lives. */
  readonly joinTokenTtlMin: number;
  /** Why nothing can be installed in this run (a lab without its K3s stand-in): the phases plan nothing and say so. */
  readonly unavailable?: string;
  /** Records that the first server is up (src/state/bootstrap.ts): from then on no server renders cluster-init. */
  markBootstrapped(firstServer: string): void;
  /** Forgets that record (fmc reset): the next apply bootstraps a new cluster. True when there was one. */
  forgetBootstrap(): boolean;
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
  /** Apply its hosts one at a time, in hosts() order, stopping at the first failure (K3s servers: quorum). */
  readonly serial?: boolean;
  /**
   * Other hosts whose facts its plan reads through pc.facts (agents need a server's CA).
   * The engine reads them with its own hosts' and, at apply time, reads again whatever
   * changed and re-plans all of the phase's hosts from the fresh facts.
   */
  peers?(pc: PhaseContext): Host[];
}
