// A bootstrap token an agent joined with in an earlier run stays in its config.yaml; fmc never
// stored it, so it is masked by its shape wherever secrets are masked (plans, diffs, logs),
// like this run's token and the stored secrets; names that only look alike are left alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { contextFor } from "../helpers.js";
import { parseFacts } from "../../src/hosts/facts.js";
import { k3sAgents, K3S_CONFIG } from "../../src/phases/k3s.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import type { Change } from "../../src/ops/change.js";

const ctx = contextFor();
/** The run's own token, masked by the session as it masks it. */
const THIS_RUN = "qwerty.zxcvbnmasdfghjkl";
/** The token worker2 joined with in an earlier run, in K3s's secure format. */
const EARLIER = "abcdef.0123456789abcdef";
const earlierConfig = `token: K10${"0".repeat(64)}::${EARLIER}\nnode-label:\n  - old=1\n`;

const b64 = (s: string) => Buffer.from(s).toString("base64");
const joined = parseFacts("worker2", ["@os", "ID=debian", "@hostname", "worker2", "@units", "Id=k3s-agent.service", "ActiveState=active", "UnitFileState=enabled", "", "@files", `${K3S_CONFIG} 600 root root ${b64(earlierConfig)}`, "@guard", "k3s-binary-present 0", "k3s-binary-current 0", "k3s-agent-joined 0", "@end", ""].join("\n"));
const master1 = parseFacts("master1", ["@os", "ID=debian", "@hostname", "master1", "@guard", "k3s-etcd-member 0", "@end", ""].join("\n"));

const pc: PhaseContext = {
  render: { ...ctx, k3sBootstrapped: true },
  mask: (t) => ctx.secrets.mask(t).replaceAll(THIS_RUN, "<secret:k3s-bootstrap-token>"),
  loginUser: () => "root",
  facts: new Map([["master1", master1], ["worker2", joined]]),
  k3s: { bundle: () => undefined, joinToken: THIS_RUN, joinTokenTtlMin: 60, markBootstrapped: () => undefined, forgetBootstrap: () => false },
};
const shown = (changes: readonly Change[]) => changes.map((c) => [c.title, ...c.notes, c.diff ?? "", ...c.commands.map((x) => x.display)].join("\n")).join("\n");

test("an earlier run's bootstrap token in a joined agent's config is masked in the plan's diff", () => {
  const changes = k3sAgents.plan(pc, ctx.topo.host("worker2"), joined);
  const config = changes.find((c) => c.path === K3S_CONFIG);
  assert.ok(config?.diff, "the setting: worker2's config is rewritten (it keeps the token it joined with)");
  assert.ok(!shown(changes).includes("0123456789abcdef"), `the earlier token's secret is shown:\n${config.diff}`);
  assert.match(config.diff, /token: K10<secret:k3s-bootstrap-token>|::<secret:k3s-bootstrap-token>/);
});

test("the masker takes any bootstrap token, alone or in K3s's secure format; names that merely look alike stay", () => {
  const mask = pc.mask;
  assert.equal(mask(`joined with ${EARLIER}.`), "joined with <secret:k3s-bootstrap-token>.");
  assert.equal(mask(`K10abc::${EARLIER}`), "K10abc::<secret:k3s-bootstrap-token>");
  assert.equal(mask(THIS_RUN), "<secret:k3s-bootstrap-token>");
  for (const plain of ["master1.microcloud.lan", "abcdef.0123456789abcdef.example.org", "registry.k8s.io/pause:3.9", "sub.abcdef.0123456789abcdef", "ABCDEF.0123456789ABCDEF"]) assert.equal(mask(plain), plain);
});
