// Where each host is reached: from the spec, or from the lab's inventory overlay that
// `fmc lab up` writes so plan/apply target the lab with no edits.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Spec } from "../spec/schema.js";
import type { SshTarget } from "../hosts/ssh.js";

export interface Inventory {
  readonly source: "spec" | "lab";
  readonly targets: ReadonlyMap<string, SshTarget>;
  readonly knownHostsFile: string;
}

export interface LabInventoryFile {
  readonly lab: string;
  readonly hosts: ReadonlyArray<{ name: string; address: string; port: number; user: string }>;
  readonly knownHosts: string;
}

export const labInventoryPath = (stateDir: string) => join(stateDir, "lab", "inventory.json");

export function inventory(spec: Spec, stateDir: string): Inventory {
  const lab = labInventoryPath(stateDir);
  if (existsSync(lab)) {
    const inv = JSON.parse(readFileSync(lab, "utf8")) as LabInventoryFile;
    return {
      source: "lab",
      targets: new Map(inv.hosts.filter((h) => spec.hosts.some((s) => s.name === h.name)).map((h) => [h.name, { ...h }])),
      knownHostsFile: inv.knownHosts,
    };
  }
  return {
    source: "spec",
    targets: new Map(
      spec.hosts.map((h) => [h.name, { name: h.name, address: h.ssh?.host ?? h.address, port: h.ssh?.port ?? spec.ssh.port, user: h.ssh?.user ?? spec.ssh.user }]),
    ),
    knownHostsFile: join(stateDir, "known_hosts"),
  };
}
