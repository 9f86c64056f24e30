// fmc restore etcd SNAPSHOT: K3s's documented restore of its embedded etcd on every server
// (src/runbooks/etcd-restore.ts has the order and where each step comes from). The snapshot is
// checked against its .sha256 before any host is reached; then the whole order is printed
// (--plan stops there), one question names what is lost (--yes skips it), and the runbook
// runs under the hosts lock (the state directory's and one on every server, taken
// before the question: carryOut), stopping at the first failure.
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession } from "../engine/session.js";
import { emptyRequest, gatherFacts, type OsFamilyName } from "../hosts/facts.js";
import { readSnapshot, restoreHeading, restoreQuestion, restoreRunbook, verifySnapshot } from "../runbooks/etcd-restore.js";
import { carryOut } from "./runbook-cli.js";
import { sessionArgs, sessionOptions } from "./session-args.js";
import { dim } from "./ui.js";

/** The positional is the snapshot: the spec is named with -f here. */
const { phase: _phase, spec: _spec, ...connectArgs } = sessionArgs;

export const restoreEtcd = defineCommand({
  meta: {
    name: "etcd",
    description:
      "Restore K3s's etcd on every server from a snapshot fmc backup etcd wrote (checked against its .sha256 first): stop K3s on all servers, " +
      "k3s server --cluster-reset --cluster-reset-restore-path on the first, start it, then each other server with its database set aside rejoins; " +
      "agents keep running. --plan shows the order; it asks first (--yes to skip)",
  },
  args: {
    snapshot: { type: "positional", required: true, valueHint: "SNAPSHOT", description: "the snapshot file here, with its .sha256 beside it (fmc backup etcd prints its path)" },
    ...connectArgs,
    plan: { type: "boolean", description: "show the order and the checks, change nothing", default: false },
    yes: { type: "boolean", alias: "y", description: "do not ask before replacing every server's etcd data", default: false },
  },
  async run({ args: a }) {
    // a snapshot that cannot be checked, or does not match, never gets further than here
    const snap = readSnapshot(a.snapshot);
    process.stderr.write(dim(`${await verifySnapshot(snap)}\n`));
    const s = await openSession({ ...sessionOptions(a), hosts: (pc) => pc.render.topo.servers });
    try {
      const servers = s.render.topo.servers;
      const missing = servers.filter((h) => !s.transports.has(h.name));
      if (missing.length) {
        throw new FmcError(
          "UNREACHABLE",
          `a restore stops and restarts every server, and ${missing.map((h) => `${h.name} (${s.unreachable.get(h.name) ?? "not in the inventory"})`).join(", ")} cannot be reached`,
          "bring it back first, or take it out of the cluster and the spec: a server left out would keep its old etcd data",
        );
      }
      const families = new Map<string, OsFamilyName>();
      for (const h of servers) families.set(h.name, (await gatherFacts(s.transports.get(h.name)!, emptyRequest())).os.family);
      const now = new Date();
      const steps = restoreRunbook(s.render, { snapshot: snap.path, families, now });
      await carryOut({
        heading: restoreHeading(s.render, snap, now),
        steps,
        transports: s.transports,
        plan: a.plan,
        yes: a.yes,
        question: restoreQuestion(s.render, snap),
        stateDir: s.stateDir,
        what: "restore etcd",
      });
    } finally {
      s.close();
    }
  },
});
