// Where each host is reached: from the spec, or from the lab's inventory overlay that
// `fmc lab up` writes so plan/apply target the lab with no edits.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Spec } from "../model/schema.js";
import { Topology } from "../model/topology.js";
import type { SshTarget } from "../hosts/ssh.js";
import { ipv4 } from "../model/formats.js";
import { FmcError } from "../errors.js";
import { parseStored } from "../state/stored.js";

export interface Inventory {
  readonly source: "spec" | "lab";
  readonly targets: ReadonlyMap<string, SshTarget>;
  readonly knownHostsFile: string;
  /** The lab's stand-ins for what can't run on the lab machine (lab only). */
  readonly overrides?: LabOverrides;
  /** Files of the edge's origin certificate and key (the lab's, issued by its CA). */
  readonly originCertificate?: { readonly cert: string; readonly key: string };
}

/** What the lab runs in place of the spec's choice, because the real one can't run here. */
export interface LabOverrides {
  /** Traefik has no package here: the edge runs HAProxy. */
  readonly edgeEngine?: "haproxy";
  /** FreeIPA can't be installed here: DNS is bind9. */
  readonly dnsEngine?: "bind9";
  /** The lab's internet client, forwarded by the VPS besides the spec's sources. */
  readonly forwardFrom?: readonly string[];
}

export interface LabInventoryFile {
  readonly lab: string;
  readonly hosts: ReadonlyArray<{ name: string; address: string; port: number; user: string }>;
  readonly knownHosts: string;
  readonly overrides?: LabOverrides;
  readonly originCertificate?: { readonly cert: string; readonly key: string };
}

export const labInventoryPath = (stateDir: string) => join(stateDir, "lab", "inventory.json");

/** The overlay as `fmc lab up` writes it; a file of any other shape is refused. */
const LabInventory = z.object({
  lab: z.string(),
  hosts: z.array(z.object({ name: z.string().regex(/^[a-z0-9-]{1,63}$/), address: ipv4, port: z.number().int().min(1).max(65535), user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/) })),
  knownHosts: z.string().startsWith("/"),
  overrides: z
    .object({ edgeEngine: z.literal("haproxy").optional(), dnsEngine: z.literal("bind9").optional(), forwardFrom: z.array(z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/)).optional() })
    .optional(),
  originCertificate: z.object({ cert: z.string().startsWith("/"), key: z.string().startsWith("/") }).optional(),
});

function readLabInventory(path: string): LabInventoryFile {
  const refuse = (why: string) => new FmcError("LAB_INVENTORY", `${path} is not a lab inventory fmc wrote (${why})`, "fmc lab down, then fmc lab up, writes it again");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw refuse((e as Error).message);
  }
  return parseStored(text, LabInventory, refuse);
}

/** The spec as the lab runs it: the overrides applied (the spec file is untouched). */
export function withOverrides(spec: Spec, o: LabOverrides | undefined): Spec {
  if (!o) return spec;
  return {
    ...spec,
    edge: o.edgeEngine ? { ...spec.edge, engine: o.edgeEngine } : spec.edge,
    dns: o.dnsEngine ? { ...spec.dns, engine: o.dnsEngine } : spec.dns,
    wireguard: spec.wireguard && o.forwardFrom ? { ...spec.wireguard, forwardFrom: [...spec.wireguard.forwardFrom, ...o.forwardFrom] } : spec.wireguard,
  };
}

/** What each override means, for plan output. */
export function describeOverrides(o: LabOverrides | undefined): string[] {
  if (!o) return [];
  return [
    ...(o.edgeEngine ? ["edge.engine: haproxy (Traefik has no package on the lab machine; its config stays rendered and checked)"] : []),
    ...(o.dnsEngine ? ["dns.engine: bind9 (FreeIPA can't be installed on the lab machine; its scripts stay rendered)"] : []),
    ...(o.forwardFrom?.length ? [`wireguard.forwardFrom also allows ${o.forwardFrom.join(", ")}: the lab's internet client plays Cloudflare`] : []),
  ];
}

export function inventory(spec: Spec, stateDir: string): Inventory {
  const topo = new Topology(spec);
  const lab = labInventoryPath(stateDir);
  if (existsSync(lab)) {
    const inv = readLabInventory(lab);
    return {
      source: "lab",
      targets: new Map(inv.hosts.filter((h) => spec.hosts.some((s) => s.name === h.name)).map((h) => [h.name, { ...h }])),
      knownHostsFile: inv.knownHosts,
      overrides: inv.overrides,
      originCertificate: inv.originCertificate,
    };
  }
  return {
    source: "spec",
    targets: new Map(
      spec.hosts.map((h) => [h.name, { name: h.name, address: topo.managementAddress(h), port: h.ssh?.port ?? spec.ssh.port, user: h.ssh?.user ?? spec.ssh.user }]),
    ),
    knownHostsFile: join(stateDir, "known_hosts"),
    originCertificate: { cert: join(stateDir, "tls", "origin.pem"), key: join(stateDir, "tls", "origin-key.pem") },
  };
}
