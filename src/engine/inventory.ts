// Where each host is reached: from the spec, or from the lab's inventory overlay that
// `fmc lab up` writes so plan/apply target the lab with no edits.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Spec } from "../spec/schema.js";
import type { SshTarget } from "../hosts/ssh.js";
import { ipv4 } from "../spec/formats.js";
import { FmcError } from "../errors.js";
import { parseStored } from "../state/stored.js";

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

/** The overlay as `fmc lab up` writes it; a file of any other shape is refused. */
const LabInventory = z.object({
  lab: z.string(),
  hosts: z.array(z.object({ name: z.string().regex(/^[a-z0-9-]{1,63}$/), address: ipv4, port: z.number().int().min(1).max(65535), user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/) })),
  knownHosts: z.string().startsWith("/"),
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

export function inventory(spec: Spec, stateDir: string): Inventory {
  const lab = labInventoryPath(stateDir);
  if (existsSync(lab)) {
    const inv = readLabInventory(lab);
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
