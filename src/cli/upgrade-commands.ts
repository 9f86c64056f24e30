// fmc upgrade --to VERSION: a K3s upgrade carried out as a runbook (src/runbooks/upgrade.ts). First
// what the cluster is: etcd's members and health through the first server that answers (every
// server restarts, so quorum is checked for each), and the version every node's binary reports
// (the oldest decides the version-skew checks: no minor skipped, no downgrade). Then the whole
// order is printed (--plan stops there), confirmed once (--yes skips it) and carried out, each
// server healthy again before the next, the agents drained in batches, stopping at the first
// failure. The binary comes from `fmc bundle --version VERSION` when that bundle exists, else
// every node downloads the release and checks it against the release's checksums.
import { existsSync } from "node:fs";
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession, type Session } from "../engine/session.js";
import { k3sBundleDir, readBundle, type K3sBundle } from "../local/bundle.js";
import { readClusterVia, type EtcdClusterView } from "../k3s/etcd.js";
import { k3sCli, parseK3sVersion, parseK3sVersionOutput } from "../k3s/k3s-cli.js";
import { specVersionNote, upgradeFrom, upgradeRunbook } from "../runbooks/upgrade.js";
import type { PhaseContext } from "../phases/phase.js";
import { carryOut } from "./runbook-cli.js";
import { sessionArgs, sessionOptions } from "./session-args.js";
import { dim } from "./ui.js";

const { phase: _phase, ...connectArgs } = sessionArgs;

/** Every K3s node: servers first, as the spec lists them. */
export const k3sNodes = (pc: PhaseContext) => [...pc.render.topo.servers, ...pc.render.topo.agents];

/** etcd as the first K3s server that answers reads it, and which server that was (the one that drains and waits for agents). */
export function serversEtcd(s: Session): Promise<{ via: string; cluster: EtcdClusterView }> {
  const servers = s.render.topo.servers.map((h) => h.name);
  return readClusterVia(servers, s.transports, { unreachable: new Map([...s.unreachable].filter(([h]) => servers.includes(h))) });
}

/** What each K3s node's binary says it is (`k3s --version`), or why it could not be read. */
async function readVersions(s: Session): Promise<Map<string, { version?: string; error?: string }>> {
  const out = new Map<string, { version?: string; error?: string }>();
  await Promise.all(
    k3sNodes(s.pc).map(async (h) => {
      const t = s.transports.get(h.name);
      if (!t) return void out.set(h.name, { error: `unreachable: ${s.unreachable.get(h.name) ?? "not in the inventory"}` });
      try {
        const r = await t.exec(k3sCli("--version"), "k3s --version");
        if (r.code !== 0) return void out.set(h.name, { error: `k3s --version: ${(r.stderr || r.stdout).trim().split("\n").slice(-1)[0] ?? `exit ${r.code}`}` });
        out.set(h.name, { version: parseK3sVersionOutput(r.stdout) });
      } catch (e) {
        out.set(h.name, { error: (e as Error).message });
      }
    }),
  );
  return out;
}

/**
 * `fmc bundle --version VERSION`'s bundle, checked, when there is one for that version. In
 * the lab (no route out, no real K3s) the lab's stand-in of VERSION is made for it, so the
 * upgrade runs for real there: binaries replaced and every server restarted on a real etcd.
 */
async function bundleFor(s: Session, version: string): Promise<K3sBundle | undefined> {
  const dir = k3sBundleDir(s.stateDir, version, s.inventory.source);
  if (!existsSync(dir) && s.inventory.source === "lab") {
    const { etcdStandInAvailable, writeLabK3sBundle } = await import("../lab/k3s-standin.js");
    if (!etcdStandInAvailable()) return undefined;
    await writeLabK3sBundle(dir, version);
    process.stderr.write(dim(`lab: a K3s stand-in of ${version} to upgrade to, in ${dir}\n`));
  }
  return existsSync(dir) ? readBundle(dir, version) : undefined;
}

export const upgrade = defineCommand({
  meta: {
    name: "upgrade",
    description:
      "Upgrade K3s to --to VERSION: refused when it skips a minor version or goes back, or when a server's restart would cost etcd its quorum; servers one at a time (etcd re-checked right before each, each healthy again with the new version before the next), then agents in batches of --batch, drained first and uncordoned once Ready with the new version; stops at the first failure. --plan shows the exact order and changes nothing",
  },
  args: {
    ...connectArgs,
    to: { type: "string", description: "the K3s version to upgrade to, e.g. v1.33.5+k3s1 (one minor version up at most)", required: true },
    batch: { type: "string", description: "agents drained and upgraded at once", default: "1" },
    plan: { type: "boolean", description: "show the checks and the exact order, change nothing", default: false },
    yes: { type: "boolean", alias: "y", description: "do not ask for confirmation", default: false },
  },
  async run({ args: a }) {
    const to = parseK3sVersion(a.to);
    const s = await openSession({ ...sessionOptions(a), hosts: k3sNodes });
    try {
      const { via, cluster } = await serversEtcd(s);
      const versions = await readVersions(s);
      const read = new Map([...versions].flatMap(([name, x]) => (x.version ? [[name, x.version] as const] : [])));
      const unread = [...versions].filter(([, x]) => !x.version).map(([name, x]) => `${name}: ${x.error}`);
      const start = upgradeFrom(read, to.text, s.render.spec.k3s.version);
      if (!start.ok) {
        process.stdout.write(`Upgrade refused: ${start.text}\n`);
        process.exitCode = 1;
        return;
      }
      const from = start.from;
      const bundle = await bundleFor(s, to.text);
      const rb = upgradeRunbook(s.render, from, to.text, cluster, Number(a.batch), { bundle, via });
      if (!rb.ok) {
        process.stdout.write(`Upgrade refused: ${rb.text}\n`);
        process.exitCode = 1;
        return;
      }
      const mixed = start.running.length > 1 ? ` (the nodes run ${start.running.join(", ")})` : "";
      if (unread.length) {
        process.stderr.write(dim(`  not read: ${unread.join("; ")}\n`));
        if (!a.plan) throw new FmcError("UNREACHABLE", `every K3s node's version is read before an upgrade, and ${unread.length} could not be:\n${unread.join("\n")}`, "fmc upgrade --plan shows the order meanwhile");
      }
      const done = await carryOut({
        heading: `${rb.heading}${mixed}`,
        steps: rb.steps,
        transports: s.transports,
        plan: a.plan,
        yes: a.yes,
        question: `Upgrade K3s on ${k3sNodes(s.pc).length} node(s) to ${to.text}?`,
        stateDir: s.stateDir,
        what: "upgrade",
      });
      if (done) process.stdout.write(specVersionNote(to.text));
    } finally {
      s.close();
    }
  },
});
