// Time sources per OS: the seed leaves network.ntp at the Flatcar pool, so the engine gives
// AlmaLinux hosts their own pool in chrony.conf (`pool … iburst`, as AlmaLinux's packaged file
// has it) and Debian hosts theirs in timesyncd; a list the spec sets goes to every host.
import { test } from "node:test";
import assert from "node:assert/strict";
import { base } from "../../src/phases/base.js";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { ntpSources } from "../../src/model/ntp.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { contextFor } from "../helpers.js";

const facts = (os: string[]): HostFacts => parseFacts("h", ["@os", ...os, "@hostname", "h", "@end", ""].join("\n"));
const ALMA = ['ID="almalinux"', 'ID_LIKE="rhel centos fedora"', 'VERSION_ID="9.4"'];
const timeFile = (pc: PhaseContext, host: string, os: string[]) => base.plan(pc, pc.render.topo.host(host), facts(os)).find((c) => c.file && /chrony|timesyncd/.test(c.file.path))!.file!;

test("left at the Flatcar default, an AlmaLinux host gets AlmaLinux's pool through chrony, Flatcar keeps its own", () => {
  const ctx = contextFor();
  const pc: PhaseContext = { render: ctx, mask: (t) => t, loginUser: () => "root" };
  const alma = ctx.spec.hosts.find((h) => h.os === "almalinux")!;
  const f = timeFile(pc, alma.name, ALMA);
  assert.equal(f.path, "/etc/chrony.conf");
  assert.match(f.content, /^pool 2\.almalinux\.pool\.ntp\.org iburst$/m);
  assert.doesNotMatch(f.content, /flatcar/);
  assert.deepEqual(ntpSources(ctx.spec, "flatcar").servers, ctx.spec.network.ntp);
  assert.deepEqual(ntpSources(ctx.spec, "debian"), { pools: ["2.debian.pool.ntp.org"], servers: [] });
});

test("a list the spec sets is used on every host, as servers", () => {
  const ctx = contextFor(SEED_YAML.replace(/^network:\n/m, "network:\n  ntp: [ntp1.example.org]\n"));
  assert.deepEqual(ctx.spec.network.ntp, ["ntp1.example.org"]);
  const pc: PhaseContext = { render: ctx, mask: (t) => t, loginUser: () => "root" };
  const alma = ctx.spec.hosts.find((h) => h.os === "almalinux")!;
  assert.match(timeFile(pc, alma.name, ALMA).content, /^server ntp1\.example\.org iburst$/m);
});
