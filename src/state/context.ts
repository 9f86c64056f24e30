// The cluster as every layer sees it: the checked spec, its topology, the secrets fmc keeps
// for it, and whether K3s exists yet. Renderers turn it into files; phases, runbooks and
// the engine plan and act with it. Built by src/project.ts.
import type { Spec } from "../model/schema.js";
import type { Topology } from "../model/topology.js";
import type { Secrets } from "./secrets.js";

export interface ClusterContext {
  readonly spec: Spec;
  readonly topo: Topology;
  readonly secrets: Secrets;
  /** The K3s cluster exists (state marker, src/state/bootstrap.ts): no server renders cluster-init. */
  readonly k3sBootstrapped?: boolean;
}
