// The k3s-servers and k3s-agents phases planned from facts: the bootstrap server alone gets
// cluster-init and only until the cluster exists, a node running another version is left to
// fmc upgrade, agents pin the cluster CA in a bootstrap token that never shows unmasked, and
// the version cut-off for bootstrap tokens follows K3s's release notes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { parse } from "yaml";
import { contextFor } from "../helpers.js";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { k3sAgents, k3sServers, supportsBootstrapTokens, bootstrapTokenSecret, K3S_CONFIG, K3S_SERVER_CA } from "../../src/phases/k3s.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import { newBootstrapToken } from "../../src/engine/session.js";
import { ignitionConfig } from "../../src/render/ignition.js";
import type { Change } from "../../src/ops/change.js";

const b64 = (s: string) => Buffer.from(s).toString("base64");
function factsOf(name: string, o: { guards?: Record<string, number>; files?: Record<string, string>; active?: string; os?: string } = {}): HostFacts {
  const sections: Record<string, string[]> = {
    os: [`ID=${o.os ?? "debian"}`, 'VERSION_ID="12"'],
    hostname: [name],
    addr: [],
    units: o.active ? [`Id=k3s.service`, `ActiveState=${o.active}`, "UnitFileState=enabled", "", "Id=k3s-agent.service", `ActiveState=${o.active}`, "UnitFileState=enabled", ""] : [],
    files: Object.entries(o.files ?? {}).map(([p, c]) => `${p} 600 root root ${b64(c)}`),
    guard: Object.entries({ "k3s-binary-present": 1, "k3s-binary-current": 1, "k3s-etcd-member": 1, "k3s-agent-joined": 1, ...(o.guards ?? {}) }).map(([k, v]) => `${k} ${v}`),
  };
  return parseFacts(name, Object.entries(sections).map(([k, v]) => [`@${k}`, ...v].join("\n")).join("\n") + "\n@end\n");
}

const token = newBootstrapToken();
function pcWith(facts: Map<string, HostFacts>, bootstrapped = false, version?: string): PhaseContext {
  const ctx = contextFor();
  const spec = version ? { ...ctx.spec, k3s: { ...ctx.spec.k3s, version } } : ctx.spec;
  const render = { ...ctx, spec, k3sBootstrapped: bootstrapped };
  return {
    render,
    mask: (t) => ctx.secrets.mask(t).replaceAll(token, "<secret:k3s-bootstrap-token>"),
    loginUser: () => "core",
    facts,
    k3s: { bundle: () => undefined, joinToken: token, joinTokenTtlMin: 60, markBootstrapped: () => undefined, forgetBootstrap: () => false },
  };
}
const host = (pc: PhaseContext, name: string) => pc.render.spec.hosts.find((h) => h.name === name)!;
const configOf = (changes: Change[]) => changes.filter((c) => c.file?.path === K3S_CONFIG).map((c) => parse(c.file!.content) as Record<string, unknown>);

test("a fresh cluster: only master1 bootstraps, is waited for and recorded, then rewritten to join through the VIP; the others join", () => {
  const facts = new Map(["master1", "master2", "master3", "worker1"].map((n) => [n, factsOf(n)]));
  const pc = pcWith(facts);
  assert.equal(k3sServers.serial, true);
  const m1 = k3sServers.plan(pc, host(pc, "master1"), facts.get("master1")!);
  const [first, final] = configOf(m1);
  assert.equal(first!["cluster-init"], true);
  assert.equal(final!["cluster-init"], undefined);
  assert.match(String(final!.server), /^https:\/\/10\.17\.5\.10:6443$/);
  const wait = m1.find((c) => c.title.startsWith("wait for master1"))!;
  assert.ok(wait.after, "the wait records the bootstrap");
  assert.ok(m1.indexOf(wait) < m1.findIndex((c) => c.title.includes("no cluster-init")));
  const m2 = k3sServers.plan(pc, host(pc, "master2"), facts.get("master2")!);
  assert.equal(configOf(m2)[0]!["cluster-init"], undefined);
  assert.ok(m2.at(-1)!.title.startsWith("wait for master2"));
  // the binary: downloaded on the node, checked against the release's checksum file, on Debian in /usr/local/bin
  assert.match(m1[0]!.title, /^install K3s v1\.33\.4\+k3s1 in \/usr\/local\/bin \(downloaded by the node/);
  assert.match(m1[0]!.commands[0]!.shell, /sha256sum-amd64\.txt/);
  // the token for the joining agent: made on master1, its Secret on stdin only
  const tok = m1.find((c) => c.title.startsWith("create a bootstrap token"))!;
  assert.doesNotMatch(tok.commands[0]!.shell, new RegExp(token.split(".")[1]!));
  assert.ok(tok.commands[0]!.stdinSecret);
  assert.match(tok.title, /worker1/);
});

test("once the cluster exists no server renders cluster-init, and a rebuilt master1 joins; a server without master1 reachable is refused", () => {
  const facts = new Map(["master1", "master2"].map((n) => [n, factsOf(n, n === "master2" ? { guards: { "k3s-etcd-member": 0 } } : {})]));
  const pc = pcWith(facts);
  const m1 = k3sServers.plan(pc, host(pc, "master1"), facts.get("master1")!);
  assert.deepEqual(configOf(m1).map((c) => c["cluster-init"]), [undefined], "an etcd member elsewhere: the cluster exists");
  const lonely = new Map([["master2", factsOf("master2")]]);
  const pc2 = pcWith(lonely);
  const m2 = k3sServers.plan(pc2, host(pc2, "master2"), lonely.get("master2")!);
  assert.match(m2[0]!.title, /master1 bootstraps the cluster and can't be reached/);
});

test("a node running another K3s version is left to fmc upgrade; Flatcar gets /opt/bin and Ignition's unit", () => {
  const facts = new Map([["master1", factsOf("master1", { guards: { "k3s-binary-present": 0, "k3s-etcd-member": 0 }, active: "active" })]]);
  const pc = pcWith(facts, true);
  const m1 = k3sServers.plan(pc, host(pc, "master1"), facts.get("master1")!);
  assert.ok(!m1.some((c) => c.title.startsWith("install K3s")));
  assert.ok(m1.some((c) => c.notes.some((n) => /fmc upgrade --to v1\.33\.4\+k3s1 --plan/.test(n))));
  const fc = new Map([["master1", factsOf("master1", { os: "flatcar" })]]);
  const pcf = pcWith(fc, true);
  const f1 = k3sServers.plan(pcf, host(pcf, "master1"), fc.get("master1")!);
  assert.match(f1[0]!.title, /in \/opt\/bin/);
  const unit = f1.find((c) => c.file?.path === "/etc/systemd/system/k3s.service")!.file!.content;
  assert.match(unit, /^ExecStart=\/opt\/bin\/k3s server$/m);
  assert.match(unit, /^Requires=k3s-install\.service$/m);
});

test("an agent pins the cluster CA in its bootstrap token; a joined agent keeps its token; diffs mask it", () => {
  const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  const facts = new Map([
    ["master1", factsOf("master1", { files: { [K3S_SERVER_CA]: ca }, guards: { "k3s-etcd-member": 0 } })],
    ["worker1", factsOf("worker1")],
    ["worker2", factsOf("worker2", { guards: { "k3s-agent-joined": 0 }, files: { [K3S_CONFIG]: "token: K10old::abcdef.0123456789abcdef\n" } })],
  ]);
  const pc = pcWith(facts, true);
  const w1 = k3sAgents.plan(pc, host(pc, "worker1"), facts.get("worker1")!);
  const cfg = configOf(w1)[0]!;
  assert.equal(cfg.token, `K10${createHash("sha256").update(ca).digest("hex")}::${token}`);
  const diff = w1.find((c) => c.file?.path === K3S_CONFIG)!.diff!;
  assert.ok(!diff.includes(token.split(".")[1]!), "the token's secret is masked in the diff");
  assert.ok(w1.at(-1)!.title.startsWith("wait until worker1 is admitted"));
  const w2 = k3sAgents.plan(pc, host(pc, "worker2"), facts.get("worker2")!);
  assert.equal(configOf(w2)[0]!.token, "K10old::abcdef.0123456789abcdef");
  // before any server is up, the agent's join is planned again at apply time, never run
  const none = new Map([["master1", factsOf("master1")], ["worker1", factsOf("worker1")]]);
  const pcn = pcWith(none);
  assert.match(k3sAgents.plan(pcn, host(pcn, "worker1"), none.get("worker1")!)[0]!.title, /once a server is up/);
});

test("bootstrap tokens: K3s's cut-off versions, the kubeadm format, and the Secret k3s token create writes", () => {
  for (const [v, ok] of [["v1.26.1+k3s1", false], ["v1.26.2+k3s1", true], ["v1.25.7+k3s1", true], ["v1.24.10+k3s1", false], ["v1.22.17+k3s1", false], ["v1.33.4+k3s1", true]] as const) {
    assert.equal(supportsBootstrapTokens(v), ok, v);
  }
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const t = newBootstrapToken();
    assert.match(t, /^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    seen.add(t);
  }
  assert.equal(seen.size, 200);
  const s = JSON.parse(bootstrapTokenSecret("abcdef.0123456789abcdef", new Date("2026-11-25T12:00:00.000Z"), "d")) as { metadata: { name: string }; stringData: Record<string, string> };
  assert.equal(s.metadata.name, "bootstrap-token-abcdef");
  assert.equal(s.stringData.expiration, "2026-11-25T12:00:00Z");
  // an old version: agents join with the agent token, no bootstrap token is made
  const facts = new Map([["master1", factsOf("master1")], ["worker1", factsOf("worker1")]]);
  const pc = pcWith(facts, false, "v1.24.10+k3s1");
  assert.ok(!k3sServers.plan(pc, host(pc, "master1"), facts.get("master1")!).some((c) => c.title.startsWith("create a bootstrap token")));
});

test("a serial phase's hosts go one at a time and the first failure stops the rest", async () => {
  const { inOrder } = await import("../../src/engine/run.js");
  const started: number[] = [];
  let inFlight = 0;
  let most = 0;
  const r = await inOrder([1, 2, 3], 16, async (n) => {
    started.push(n);
    most = Math.max(most, ++inFlight);
    await new Promise((res) => setTimeout(res, 5));
    inFlight--;
    if (n === 2) throw new Error("master2 did not become ready");
    return n;
  });
  assert.deepEqual(started, [1, 2], "master3 never starts");
  assert.equal(most, 1);
  assert.deepEqual(r.map((x) => x.status), ["fulfilled", "rejected"]);
});

// --- Flatcar: booted from Ignition, then the k3s phases ---------------------------------

interface IgnNode {
  storage: { files: Array<{ path: string; mode: number; contents: { source: string } }> };
  systemd: { units: Array<{ name: string; enabled?: boolean; contents?: string }> };
}
interface SimHost {
  files: Map<string, { content: string; mode: number }>;
  units: Map<string, { active: string; enabled: string }>;
  guards: Record<string, number>;
}
const decode = (source: string) => Buffer.from(source.split(",")[1]!, "base64").toString("utf8");

/** What a Flatcar node holds after Ignition ran and the first boot finished (k3s-install.service installed the binary). */
function bootedFromIgnition(ign: IgnNode): SimHost {
  const files = new Map(ign.storage.files.map((f) => [f.path, { content: decode(f.contents.source), mode: f.mode }]));
  const units = new Map<string, { active: string; enabled: string }>();
  for (const u of ign.systemd.units) {
    if (u.contents) files.set(`/etc/systemd/system/${u.name}`, { content: u.contents, mode: 0o644 });
    // an enabled unit ran at first boot (K3s's Restart=always keeps it up)
    units.set(u.name, u.enabled ? { active: "active", enabled: "enabled" } : { active: "inactive", enabled: "disabled" });
  }
  return { files, units, guards: { "k3s-binary-present": 0, "k3s-binary-current": 0, "k3s-etcd-member": 1, "k3s-agent-joined": 1 } };
}

function simFacts(name: string, h: SimHost): HostFacts {
  const sections: Record<string, string[]> = {
    os: ["ID=flatcar", 'VERSION_ID="4230.2.3"'],
    hostname: [name],
    addr: [],
    units: [...h.units].flatMap(([u, s]) => [`Id=${u}`, `ActiveState=${s.active}`, `UnitFileState=${s.enabled}`, ""]),
    files: [...h.files].map(([p, f]) => `${p} ${f.mode.toString(8)} root root ${b64(f.content)}`),
    guard: Object.entries(h.guards).map(([k, v]) => `${k} ${v}`),
  };
  return parseFacts(name, Object.entries(sections).map(([k, v]) => [`@${k}`, ...v].join("\n")).join("\n") + "\n@end\n");
}

/** Runs a plan on the simulated host: files written, units enabled and started, the node a member or joined once K3s started. */
function applyTo(h: SimHost, changes: Change[], server: boolean): void {
  for (const c of changes) {
    if (c.file) h.files.set(c.file.path, { content: c.file.content, mode: c.file.mode ?? 0o644 });
    for (const x of c.commands) {
      const m = /^systemctl (enable|start|restart) (k3s(?:-agent)?\.service)$/.exec(x.display);
      if (!m) continue;
      const u = h.units.get(m[2]!) ?? { active: "inactive", enabled: "disabled" };
      h.units.set(m[2]!, m[1] === "enable" ? { ...u, enabled: "enabled" } : { ...u, active: "active" });
      if (m[1] === "enable") continue;
      h.guards[server ? "k3s-etcd-member" : "k3s-agent-joined"] = 0;
      // a started server has the cluster CA the agents' tokens pin
      if (server && !h.files.has(K3S_SERVER_CA)) h.files.set(K3S_SERVER_CA, { content: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", mode: 0o644 });
    }
  }
}

test("Flatcar: Ignition enables no K3s unit and writes configs that can neither bootstrap nor join; the phases start K3s in order and a re-plan is empty", () => {
  const ctx = contextFor();
  const nodes = ["master1", "master2", "master3", "worker1", "worker2", "worker3", "storage1"];
  const sim = new Map<string, SimHost>();
  for (const n of nodes) {
    const ign = ignitionConfig(ctx, ctx.topo.host(n)) as unknown as IgnNode;
    const server = n.startsWith("master");
    const unit = ign.systemd.units.find((u) => u.name === (server ? "k3s.service" : "k3s-agent.service"))!;
    assert.ok(unit.contents, `${n}: Ignition writes the unit`);
    assert.notEqual(unit.enabled, true, `${n}: Ignition must not enable ${unit.name}`);
    assert.equal(ign.systemd.units.find((u) => u.name === "k3s-install.service")?.enabled, true, `${n}: the binary is installed at first boot`);
    const cfg = parse(decode(ign.storage.files.find((f) => f.path === K3S_CONFIG)!.contents.source)) as Record<string, unknown>;
    assert.equal(cfg["cluster-init"], undefined, `${n}: no cluster-init before the phase decides`);
    if (server) assert.equal(cfg.server, "https://10.17.5.10:6443", n);
    else assert.equal(cfg.token, undefined, `${n}: an agent's first-boot config carries no token`);
    sim.set(n, bootedFromIgnition(ign));
  }
  let bootstrapped = false;
  const pcNow = () => {
    const facts = new Map(nodes.map((n) => [n, simFacts(n, sim.get(n)!)]));
    const pc = pcWith(facts, bootstrapped);
    return { pc: { ...pc, k3s: { ...pc.k3s!, markBootstrapped: () => void (bootstrapped = true) } }, facts };
  };
  const first: Record<string, Change[]> = {};
  for (const n of nodes) {
    const { pc, facts } = pcNow();
    const phase = n.startsWith("master") ? k3sServers : k3sAgents;
    const plan = phase.plan(pc, host(pc, n), facts.get(n)!);
    first[n] = plan;
    applyTo(sim.get(n)!, plan, n.startsWith("master"));
    for (const c of plan) c.after?.();
  }
  for (const n of nodes) {
    const server = n.startsWith("master");
    const unit = server ? "k3s.service" : "k3s-agent.service";
    const titles = first[n]!.map((c) => c.title);
    assert.ok(titles.some((t) => t.startsWith("enable") && t.includes(unit)), `${n}: the phase enables ${unit}: ${titles.join(" | ")}`);
    assert.ok(!first[n]!.some((c) => c.file?.path === `/etc/systemd/system/${unit}`), `${n}: the unit Ignition wrote is the phase's`);
    assert.ok(!first[n]!.some((c) => c.title.startsWith("install K3s")), `${n}: k3s-install.service installed the binary`);
  }
  // master1 bootstraps (cluster-init, then the VIP form Ignition wrote); master2 and master3 keep Ignition's config
  assert.deepEqual(configOf(first.master1!).map((c) => c["cluster-init"]), [true, undefined]);
  assert.deepEqual(configOf(first.master2!), []);
  // agents get their config with the CA-pinned bootstrap token
  assert.match(String(configOf(first.worker1!)[0]!.token), /^K10[0-9a-f]{64}::/);
  assert.ok(bootstrapped);
  for (const n of nodes) {
    const { pc, facts } = pcNow();
    const phase = n.startsWith("master") ? k3sServers : k3sAgents;
    const again = phase.plan(pc, host(pc, n), facts.get(n)!).filter((c) => !c.title.startsWith("create a bootstrap token"));
    assert.deepEqual(again.map((c) => c.title), [], `${n}: a re-plan after apply`);
  }
});
