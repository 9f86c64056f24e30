// Every file a phase may write is a file it reads as a fact. A phase that writes a path it
// never reads sees it "absent" on every run, so its plan never empties (the README
// walk-through found one: base wrote /etc/modules-load.d/fmc-k3s.conf without reading it).
// Each phase plans for every host of the seed on a bare Debian 12 host whose guards all pass
// (modules loadable, devices present, …), so the widest set of changes is planned.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { PHASES, type PhaseContext } from "../../src/phases/index.js";
import { contextFor } from "../helpers.js";

const pc: PhaseContext = { render: contextFor(), mask: (t: string) => t, loginUser: () => "root" };

function bareDebian(host: string, guards: ReadonlyMap<string, string>): HostFacts {
  const lines = ["@os", "ID=debian", "VERSION_ID=12", "@hostname", host, ...[...guards.keys()].flatMap((id) => ["@guard", `${id} 0`]), "@end", ""];
  return parseFacts(host, lines.join("\n"));
}

test("every file a phase plans to write is among the files it reads as facts", () => {
  let checked = 0;
  const planned: string[] = [];
  for (const phase of PHASES) {
    for (const host of phase.hosts(pc)) {
      const request = phase.facts(pc, host);
      let changes;
      try {
        changes = phase.plan(pc, host, bareDebian(host.name, request.guards ?? new Map()));
      } catch {
        continue; // more than a bare Debian host is needed (storage: its data disk; FreeIPA: AlmaLinux; Traefik: a binary): their own tests cover them
      }
      planned.push(`${phase.name}/${host.name}`);
      for (const c of changes) {
        if (!c.file) continue;
        checked++;
        // "~user/rel" asks for a file in that user's home, as the host's passwd has it (root's: /root)
        const read = [...(request.files ?? [])].map((f) => f.replace(/^~root\//, "/root/"));
        assert.ok(read.includes(c.file.path), `${phase.name} on ${host.name} writes ${c.file.path} but does not read it as a fact`);
      }
    }
  }
  // the check covered the phases that write files on the seed's hosts
  for (const p of ["base/master1", "base/storage1", "firewall/firewall1", "wireguard/vps1", "database/postgresql1", "longhorn-prereqs/worker1", "loadbalancer/loadbalancer1", "k3s-servers/master1"]) assert.ok(planned.includes(p), `${p} was planned`);
  assert.ok(checked > 50, `${checked} file changes checked`);
});
