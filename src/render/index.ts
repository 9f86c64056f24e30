// Every renderer, in the order the artifacts are listed. Each is a pure function of
// the render context; renderAll() adds nothing but the list.
import type { Artifact, Renderer, ClusterContext } from "./types.js";
import { FmcError } from "../errors.js";
import { renderTerraform } from "./terraform.js";
import { renderIgnition } from "./ignition.js";
import { renderK3s } from "./k3s.js";
import { renderHaproxy } from "./haproxy.js";
import { renderKeepalived } from "./keepalived.js";
import { renderTraefik } from "./traefik.js";
import { renderEdge } from "./edge.js";
import { renderDatabase } from "./database.js";
import { renderWireguard } from "./wireguard.js";
import { renderFirewall } from "./firewall.js";
import { renderStorage } from "./storage.js";
import { renderDns } from "./dns.js";
import { renderKubernetes } from "./kubernetes.js";
import { renderPrometheus } from "./prometheus.js";
import { renderDiagram } from "./diagram.js";

export const RENDERERS: ReadonlyArray<readonly [string, Renderer]> = [
  ["terraform", renderTerraform],
  ["ignition", renderIgnition],
  ["k3s", renderK3s],
  ["haproxy", renderHaproxy],
  ["keepalived", renderKeepalived],
  ["traefik", renderTraefik],
  ["edge", renderEdge],
  ["wireguard", renderWireguard],
  ["firewall", renderFirewall],
  ["storage", renderStorage],
  ["database", renderDatabase],
  ["dns", renderDns],
  ["kubernetes", renderKubernetes],
  ["prometheus", renderPrometheus],
  ["diagram", renderDiagram],
];

export function renderAll(ctx: ClusterContext): Artifact[] {
  const all = RENDERERS.flatMap(([, render]) => render(ctx));
  const seen = new Set<string>();
  for (const a of all) {
    if (seen.has(a.path)) throw new FmcError("RENDER_COLLISION", `two artifacts would be written to ${a.path}`, "two names in the spec lead to the same file; please report the spec (validation should have caught it)");
    seen.add(a.path);
  }
  return all;
}

export type { Artifact, ClusterContext } from "./types.js";
