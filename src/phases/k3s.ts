// k3s-servers and k3s-agents: install the pinned K3s and form the cluster in an order that
// keeps etcd's quorum.
//
// Servers go one at a time (Phase.serial): the first with cluster-init, and only until the
// cluster exists (src/state/bootstrap.ts); apply waits until its API answers /readyz and its
// etcd member reports healthy, records the bootstrap, and only then goes on to the next
// server, which joins through the API VIP and is waited for in turn. A server that can't be
// reached stops the run before a later one joins. Agents join in parallel afterwards, each
// with a short-lived bootstrap token made for this run (the kubeadm-style Secret that
// `k3s token create --ttl` writes, fed on stdin so the secret is never on a command line)
// in K3s's secure format K10<sha256 of the cluster CA>::<id>.<secret>, so an agent checks
// the server's identity before it sends the token (docs.k3s.io/cli/token). A node that
// joined keeps the token it joined with: K3s lets it restart on its own identity after the
// token expires (k3s-io/k3s#6663).
//
// The binary: uploaded from a checked bundle (fmc bundle: air-gap) and checked again on the
// node, or downloaded by the node and checked against the release's sha256sum-amd64.txt; in
// /opt/bin on Flatcar (its /usr is read-only), /usr/local/bin elsewhere. A node that already
// runs another K3s version is left alone: that is fmc upgrade's work, with drains.
//
// On Flatcar, Ignition has already installed the binary and written the unit and a config
// that cannot bootstrap or join by itself (render/k3s.ts k3sFirstBootConfigText), but never
// enabled K3s: enabling and starting it is these phases' work, in the order above.
import { createHash } from "node:crypto";
import { parse as parseYaml } from "yaml";
import { cmd, script, slow, type Command } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import { k3sBinDir } from "../hosts/os.js";
import type { Change } from "../ops/change.js";
import { K3S_ETCD } from "../k3s/etcd.js";
import { fileChange } from "../ops/file.js";
import { markingReload, pendingMarker, reloadPending, serviceChange } from "../ops/service.js";
import { unitPath } from "../ops/unit.js";
import { k3sUnit } from "../render/ignition.js";
import { k3sVersionOf } from "../render/k3s-install.js";
import { K3S_RESOLV_CONF, k3sConfigText, k3sResolvConf } from "../render/k3s.js";
import { sh } from "../render/quote.js";
import type { ClusterContext } from "../state/context.js";
import type { Host } from "../model/schema.js";
import type { Phase, PhaseContext } from "./phase.js";
import { AGENT_JOIN_S, AGENT_UNIT, installableBundle, k3sBinaryCommand, parseK3sVersion, SERVER_READY_S, SERVER_UNIT } from "../k3s/k3s-cli.js";


export const K3S_CONFIG = "/etc/rancher/k3s/config.yaml";
/** The cluster CA agents pin (K3s: server/tls/server-ca.crt; its SHA-256 is the token's hash part). */
export const K3S_SERVER_CA = "/var/lib/rancher/k3s/server/tls/server-ca.crt";
/** Present once this server is an etcd member (K3s starts it from here whatever its config says). */
const K3S_ETCD_MEMBER = "/var/lib/rancher/k3s/server/db/etcd/member";
/** The kubelet's client certificate: a K3s agent writes it once the cluster admitted it. */
const K3S_AGENT_JOINED = "/var/lib/rancher/k3s/agent/client-kubelet.crt";

const G_BIN_PRESENT = "k3s-binary-present";
const G_BIN_CURRENT = "k3s-binary-current";
const G_MEMBER = "k3s-etcd-member";
const G_JOINED = "k3s-agent-joined";

const isServer = (h: Host) => h.roles.includes("k3s-server");
const unitOf = (h: Host) => (isServer(h) ? SERVER_UNIT : AGENT_UNIT);

/** The binary wherever this OS keeps it (facts decide; the guards look in both places). */
const BIN_SH = 'b=/usr/local/bin/k3s; if grep -qs "^ID=flatcar" /etc/os-release; then b=/opt/bin/k3s; fi';

/** K3s releases that take kubeadm-style bootstrap tokens: from the 2023-02 patch releases on (docs.k3s.io/cli/token). */
export function supportsBootstrapTokens(version: string): boolean {
  const v = parseK3sVersion(version);
  if (v.major !== 1) return v.major > 1;
  const firstPatch: Record<number, number> = { 23: 17, 24: 11, 25: 7, 26: 2 };
  if (v.minor >= 27) return true;
  return firstPatch[v.minor] !== undefined && v.patch >= firstPatch[v.minor]!;
}

/** K3s's secure token: K10 + the SHA-256 of the CA certificate as stored (PEM) + "::" + credentials. */
const secureToken = (caPem: string, credentials: string) => `K10${createHash("sha256").update(caPem).digest("hex")}::${credentials}`;

/** The bootstrap-token Secret `k3s token create` writes (kube-system/bootstrap-token-<id>). */
export function bootstrapTokenSecret(token: string, expires: Date, description: string): string {
  const m = /^([a-z0-9]{6})\.([a-z0-9]{16})$/.exec(token);
  if (!m) throw new Error("a bootstrap token reads [a-z0-9]{6}.[a-z0-9]{16}");
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: `bootstrap-token-${m[1]}`, namespace: "kube-system" },
    type: "bootstrap.kubernetes.io/token",
    stringData: {
      "token-id": m[1],
      "token-secret": m[2],
      expiration: expires.toISOString().replace(/\.\d{3}Z$/, "Z"),
      "usage-bootstrap-authentication": "true",
      "usage-bootstrap-signing": "true",
      "auth-extra-groups": "system:bootstrappers:k3s:default-node-token",
      description,
    },
  });
}

/** Whether the cluster exists: the state marker, or a server that is already an etcd member. */
function clusterExists(pc: PhaseContext): boolean {
  if (pc.render.k3sBootstrapped) return true;
  return pc.render.topo.servers.some((s) => pc.facts?.get(s.name)?.guards.get(G_MEMBER) === 0);
}

function renderFor(pc: PhaseContext, bootstrapped: boolean): ClusterContext {
  return bootstrapped === !!pc.render.k3sBootstrapped ? pc.render : { ...pc.render, k3sBootstrapped: bootstrapped };
}

function k3sFacts(pc: PhaseContext, host: Host) {
  // a bundle whose binary is not the spec's pin is refused here, before a node holding it counts as current
  const bundle = installableBundle(pc.render, pc.render.spec.k3s.version, pc.k3s?.bundle());
  const version = pc.render.spec.k3s.version;
  const current = bundle
    ? `${BIN_SH}; echo ${sh(`${bundle.binary.sha256}  `)}"$b" | sha256sum -c --status 2>/dev/null`
    : `${BIN_SH}; [ "$(${k3sVersionOf('"$b"')})" = ${sh(version)} ]`;
  const unit = unitOf(host);
  return {
    files: new Set([K3S_CONFIG, K3S_RESOLV_CONF, unitPath(unit), pendingMarker(unit), ...(isServer(host) ? [K3S_SERVER_CA] : [])]),
    units: new Set([unit]),
    guards: new Map([
      [G_BIN_PRESENT, `${BIN_SH}; [ -x "$b" ]`],
      [G_BIN_CURRENT, current],
      [isServer(host) ? G_MEMBER : G_JOINED, isServer(host) ? `[ -d ${K3S_ETCD_MEMBER} ]` : `[ -s ${K3S_AGENT_JOINED} ]`],
    ]),
  };
}

/** The binary: nothing when current, a refusal note when another version runs, else upload or download. */
function binaryChange(pc: PhaseContext, host: Host, facts: HostFacts, phase: string): { change?: Change; refused?: string } {
  if (facts.guards.get(G_BIN_CURRENT) === 0) return {};
  const version = pc.render.spec.k3s.version;
  const running = facts.units.get(unitOf(host))?.active === "active";
  if (facts.guards.get(G_BIN_PRESENT) === 0 && running) {
    return { refused: `K3s on ${host.name} is not the pinned ${version} and it is running: fmc apply does not upgrade a running node (fmc upgrade --to ${version} --plan drains and orders it)` };
  }
  const dir = k3sBinDir(facts.os.family);
  const { command, how } = k3sBinaryCommand(pc.render, version, dir, pc.k3s?.bundle());
  return { change: { host: host.name, phase, title: `install K3s ${version} in ${dir} (${how})`, commands: [slow(command, 900)], notes: [] } };
}

/** A command that polls `test` every 2 s until it passes, failing with `failure` after `seconds`. */
function waitFor(test: string, seconds: number, failure: string, display: string): Command {
  return slow(
    script(
      [
        `deadline=$(( $(date +%s) + ${seconds} ))`,
        `until ${test}; do`,
        `  if [ "$(date +%s)" -ge "$deadline" ]; then echo ${sh(failure)} >&2; exit 1; fi`,
        "  sleep 2",
        "done",
      ].join("\n"),
      `${display} (at most ${seconds} s)`,
    ),
    seconds + 30,
  );
}

/** A server's wait: its API answers /readyz and its etcd member says it is healthy. */
function serverReady(host: Host, dir: string): Command {
  const curl = `curl -sf --max-time 5 --cacert ${K3S_ETCD.caFile} --cert ${K3S_ETCD.certFile} --key ${K3S_ETCD.keyFile} ${K3S_ETCD.endpoint}/health`;
  return waitFor(
    `${sh(`${dir}/k3s`)} kubectl get --raw=/readyz >/dev/null 2>&1 && ${curl} | grep -q '"health":"true"'`,
    SERVER_READY_S,
    `K3s on ${host.name} did not become ready in ${SERVER_READY_S} s (API /readyz and its etcd member's /health); see journalctl -u ${SERVER_UNIT}`,
    `wait until ${host.name}'s API answers /readyz and its etcd member is healthy`,
  );
}

const agentJoined = (host: Host): Command =>
  waitFor(
    `[ -s ${K3S_AGENT_JOINED} ]`,
    AGENT_JOIN_S,
    `the K3s agent on ${host.name} was not admitted in ${AGENT_JOIN_S} s (no ${K3S_AGENT_JOINED}); see journalctl -u ${AGENT_UNIT}`,
    `wait until ${host.name} is admitted to the cluster`,
  );

/** Two server configs that differ only in how a node first finds the cluster: no restart needed for a member. */
function onlyBootstrapKeysDiffer(current: string | undefined, desired: string): boolean {
  if (!current) return false;
  try {
    const strip = (t: string) => {
      const o = { ...(parseYaml(t) as Record<string, unknown>) };
      delete o["cluster-init"];
      delete o.server;
      return JSON.stringify(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
    };
    return strip(current) === strip(desired);
  } catch {
    return false;
  }
}

/** The unit file, config files and service state; `restartWhy` collects why a running node restarts. */
function nodeChanges(pc: PhaseContext, host: Host, facts: HostFacts, phase: string, config: string, binary: Change | undefined): { changes: Change[]; started: boolean } {
  const c = { host: host.name, phase, mask: pc.mask };
  const unit = unitOf(host);
  const family = facts.os.family;
  const out: Change[] = [];
  const resolv = fileChange(facts, { path: K3S_RESOLV_CONF, content: k3sResolvConf(pc.render) }, c);
  const cfgChange = fileChange(facts, { path: K3S_CONFIG, content: config, mode: 0o600, secret: true }, c);
  const bootstrapOnly = !!cfgChange && isServer(host) && onlyBootstrapKeysDiffer(facts.files.get(K3S_CONFIG)?.content, config);
  const unitChange = fileChange(
    facts,
    { path: unitPath(unit), content: k3sUnit(isServer(host), pc.render.spec.k3s.etcdS3?.credentialsFile, { bin: `${k3sBinDir(family)}/k3s`, installUnit: family === "flatcar" }) },
    c,
  );
  const restart = !!binary || !!resolv || (!!cfgChange && !bootstrapOnly) || !!unitChange;
  if (resolv) out.push(restart ? markingReload(resolv, unit) : resolv);
  if (cfgChange) {
    const why = bootstrapOnly ? ["only how a new node finds the cluster changed (cluster-init/server): an etcd member starts from its data, so no restart"] : [];
    out.push(bootstrapOnly ? { ...cfgChange, notes: [...cfgChange.notes, ...why] } : markingReload(cfgChange, unit));
  }
  if (unitChange) out.push(markingReload({ ...unitChange, commands: [...unitChange.commands, cmd("systemctl", "daemon-reload")] }, unit));
  const state = facts.units.get(unit);
  const svc = serviceChange(
    facts,
    {
      unit,
      enabled: true,
      running: true,
      reload: restart,
      pending: reloadPending(facts, unit),
      reloadBy: "restart",
      riskIfTouched: isServer(host) ? ["this server's etcd member and API restart: the others keep quorum (servers go one at a time)"] : ["the agent restarts; its pods keep running (K3s stops only its own process)"],
    },
    c,
  );
  if (svc) out.push({ ...svc, commands: svc.commands.map((x) => slow(x, SERVER_READY_S)) });
  return { changes: out, started: !!svc || state?.active !== "active" };
}

export const k3sServers: Phase = {
  name: "k3s-servers",
  description: "K3s servers one at a time: the first bootstraps etcd, each next joins through the VIP once the one before is healthy",
  serial: true,
  hosts: (pc) => [...pc.render.topo.servers],
  peers: (pc) => [...pc.render.topo.agents],
  facts: (pc, host) => k3sFacts(pc, host),
  warnings: (pc) => (pc.k3s?.unavailable ? [pc.k3s.unavailable] : []),
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const phase = "k3s-servers";
    if (pc.k3s?.unavailable) return [];
    const exists = clusterExists(pc);
    const first = pc.render.topo.servers[0]!;
    const bootstrapping = !exists && host.name === first.name;
    if (!exists && !bootstrapping && !pc.facts?.has(first.name)) {
      return [
        {
          host: host.name,
          phase,
          title: `wait: ${first.name} bootstraps the cluster and can't be reached`,
          commands: [script(`echo "${first.name} must bootstrap the K3s cluster before ${host.name} joins, and fmc can't reach it" >&2; exit 1`, `refuse: ${first.name} first`)],
          notes: [`${host.name} would join a cluster that does not exist yet`],
        },
      ];
    }
    const { change: binary, refused } = binaryChange(pc, host, facts, phase);
    const ctx = renderFor(pc, exists);
    const { changes, started } = nodeChanges(pc, host, facts, phase, k3sConfigText(ctx, host), binary);
    const out: Change[] = [...(binary ? [binary] : []), ...changes];
    if (refused) out.push({ host: host.name, phase, title: `leave K3s on ${host.name} as it is`, commands: [], notes: [refused] });
    const dir = k3sBinDir(facts.os.family);
    if (out.some((x) => x.commands.length) && started) {
      out.push({
        host: host.name,
        phase,
        title: bootstrapping ? `wait for ${host.name} (bootstraps the cluster), then record that the cluster exists` : `wait for ${host.name} before the next server`,
        commands: [serverReady(host, dir)],
        notes: [],
        ...(bootstrapping && pc.k3s ? { after: () => pc.k3s!.markBootstrapped(host.name) } : {}),
      });
      if (bootstrapping) {
        // from now on this server joins through the VIP like the others: rebuilt, it must not start a second cluster.
        // Compared with the file as this plan leaves it (cluster-init), not as it was read: on
        // Flatcar, Ignition already wrote the VIP form, which the bootstrap write replaces.
        const written = { ...facts, files: new Map(facts.files).set(K3S_CONFIG, { content: k3sConfigText(ctx, host), mode: 0o600, owner: "root", group: "root" }) };
        const joined = fileChange(written, { path: K3S_CONFIG, content: k3sConfigText(renderFor(pc, true), host), mode: 0o600, secret: true }, { host: host.name, phase, mask: pc.mask });
        if (joined) out.push({ ...joined, title: `${joined.title}: join through the VIP from now on, no cluster-init (no restart)`, notes: [] });
      }
    }
    // the agents joining in this run get a bootstrap token, made on the first server that answers
    const issuer = pc.render.topo.servers.find((s) => pc.facts?.has(s.name));
    if (issuer?.name === host.name && pc.k3s && supportsBootstrapTokens(pc.render.spec.k3s.version)) {
      const joining = pc.render.topo.agents.filter((a) => pc.facts?.get(a.name) && pc.facts.get(a.name)!.guards.get(G_JOINED) !== 0);
      if (joining.length) {
        const ttl = pc.k3s.joinTokenTtlMin;
        const secret = bootstrapTokenSecret(pc.k3s.joinToken, new Date(Date.now() + ttl * 60_000), `fmc apply: ${joining.map((a) => a.name).join(", ")} joining`);
        out.push({
          host: host.name,
          phase,
          title: `create a bootstrap token for ${joining.map((a) => a.name).join(", ")} (expires in ${ttl} min)`,
          commands: [script(`${sh(`${dir}/k3s`)} kubectl apply -f - >/dev/null`, "k3s kubectl apply -f - (the bootstrap-token Secret k3s token create writes, on stdin)", { data: secret, secret: true })],
          notes: [],
        });
      }
    }
    return out;
  },
};

export const k3sAgents: Phase = {
  name: "k3s-agents",
  description: "K3s agents, in parallel once the servers are up, each joining with a bootstrap token that expires",
  hosts: (pc) => [...pc.render.topo.agents],
  peers: (pc) => [...pc.render.topo.servers],
  facts: (pc, host) => k3sFacts(pc, host),
  plan(pc: PhaseContext, host: Host, facts: HostFacts): Change[] {
    const phase = "k3s-agents";
    // no server in this run at all (not in the inventory, or unreachable: reported as such)
    if (pc.k3s?.unavailable || !pc.render.topo.servers.some((s) => pc.facts?.has(s.name))) return [];
    const joined = facts.guards.get(G_JOINED) === 0;
    const version = pc.render.spec.k3s.version;
    let token: string | undefined;
    let waiting: string | undefined;
    if (joined) {
      // it keeps the token it joined with: K3s restarts it on its own identity
      const current = facts.files.get(K3S_CONFIG)?.content;
      try {
        const t = current ? (parseYaml(current) as Record<string, unknown>).token : undefined;
        if (typeof t === "string") token = t;
      } catch {
        // an unreadable config is replaced; the node keeps its identity
      }
    } else if (pc.k3s && supportsBootstrapTokens(version)) {
      const ca = pc.render.topo.servers.map((s) => pc.facts?.get(s.name)?.files.get(K3S_SERVER_CA)?.content).find((x) => !!x);
      if (ca) token = secureToken(ca, pc.k3s.joinToken);
      else waiting = `no K3s server's CA (${K3S_SERVER_CA}) could be read yet: ${host.name} joins once a server is up`;
    }
    if (waiting) {
      return [
        {
          host: host.name,
          phase,
          title: `join the cluster once a server is up (the token pins the cluster CA read from it then)`,
          commands: [script(`echo ${sh(waiting)} >&2; exit 1`, "refuse: no server up")],
          notes: ["apply plans this again after the k3s-servers phase, from the servers' facts then"],
        },
      ];
    }
    const { change: binary, refused } = binaryChange(pc, host, facts, phase);
    const config = k3sConfigText(pc.render, host, token);
    const { changes, started } = nodeChanges(pc, host, facts, phase, config, binary);
    const out: Change[] = [...(binary ? [binary] : []), ...changes];
    if (refused) out.push({ host: host.name, phase, title: `leave K3s on ${host.name} as it is`, commands: [], notes: [refused] });
    if (!joined && started && out.some((x) => x.commands.length)) out.push({ host: host.name, phase, title: `wait until ${host.name} is admitted`, commands: [agentJoined(host)], notes: [] });
    return out;
  },
};
