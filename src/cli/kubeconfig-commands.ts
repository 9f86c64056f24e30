// fmc kubeconfig: the cluster's admin kubeconfig from the first K3s server that answers,
// pointed at the API VIP with the cluster CA kept, merged into ~/.kube/config (or the file
// kubectl would write from $KUBECONFIG, or --output) under a context named after the
// cluster; --print writes it to stdout instead.
import { homedir } from "node:os";
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession, type Session } from "../engine/session.js";
import type { Command } from "../hosts/command.js";
import type { Transport } from "../hosts/transport.js";
import type { ClusterContext } from "../state/context.js";
import {
  adminKubeconfigCommand, apiServerUrl, K3S_ADMIN_KUBECONFIG, KUBECONFIG_ABSENT_EXIT, kubeconfigTarget, mergeKubeconfig, rewriteKubeconfig, writeKubeconfigFile,
} from "../local/kubeconfig.js";
import { sessionArgs, sessionOptions, type SessionArgs } from "./session-args.js";
import { bold, dim } from "./ui.js";

/** A K3s server and a way to reach it, opened only when it is its turn. */
export interface ServerLink {
  readonly host: string;
  transport(): Promise<Transport>;
}

/** Where this cluster's servers keep the admin kubeconfig: K3s's default, unless k3s.serverArgs.write-kubeconfig moves it. */
export function adminKubeconfigPath(render: ClusterContext): string {
  const moved = render.spec.k3s.serverArgs["write-kubeconfig"];
  return typeof moved === "string" ? moved : K3S_ADMIN_KUBECONFIG;
}

/** The kubeconfig from the first server, in spec order, that can be reached and has one; every other server's reason if none does. */
async function fetchAdminKubeconfig(servers: readonly ServerLink[], command: Command): Promise<{ host: string; text: string }> {
  if (servers.length === 0) throw new FmcError("NO_SERVERS", "the spec has no host with the k3s-server role", "give one or more hosts the k3s-server role");
  const reasons: string[] = [];
  for (const s of servers) {
    let t: Transport;
    try {
      t = await s.transport();
    } catch (e) {
      reasons.push(`${s.host}: unreachable: ${(e as Error).message}`);
      continue;
    }
    const r = await t.exec(command, "kubeconfig: read the admin kubeconfig").catch((e: Error) => ({ code: -1, stdout: "", stderr: e.message }));
    if (r.code === 0 && r.stdout.trim() !== "") return { host: s.host, text: r.stdout };
    reasons.push(`${s.host}: ${r.code === KUBECONFIG_ABSENT_EXIT ? r.stderr.trim() : `${command.display} failed (exit ${r.code}): ${r.stderr.trim() || "no output"}`}`);
  }
  throw new FmcError("NO_KUBECONFIG", `no K3s server gave its admin kubeconfig:\n  ${reasons.join("\n  ")}`, "fmc apply installs and starts K3s; fmc plan shows what is missing");
}

export interface KubeconfigRun {
  /** Write the kubeconfig to stdout instead of merging it. */
  readonly print?: boolean;
  /** Merge into this file instead of the one kubectl would write. */
  readonly output?: string;
  readonly setCurrent: boolean;
  readonly env: { KUBECONFIG?: string };
  readonly home: string;
  readonly stdout: (s: string) => void;
  readonly stderr: (s: string) => void;
}

/** Fetch, rewrite, then print or merge: the command without its session, so tests reach it with recorded transports. */
export async function runKubeconfig(render: ClusterContext, servers: readonly ServerLink[], o: KubeconfigRun): Promise<{ host: string; file?: string }> {
  if (o.print && o.output !== undefined) throw new FmcError("USAGE", "--print and --output: choose one", "--print writes to stdout, --output FILE merges into FILE");
  const server = apiServerUrl(render.topo.apiVip.address, render.spec.loadBalancer.apiPort);
  const { host, text } = await fetchAdminKubeconfig(servers, adminKubeconfigCommand(adminKubeconfigPath(render)));
  const ours = rewriteKubeconfig(text, { clusterName: render.spec.name, server });
  if (o.print) {
    o.stdout(ours.text);
    o.stderr(dim(`admin kubeconfig of ${render.spec.name} from ${host}, server ${server}: it holds the admin's client key, keep it 0600\n`));
    return { host };
  }
  const target = kubeconfigTarget({ output: o.output, env: o.env, home: o.home });
  let merged: ReturnType<typeof mergeKubeconfig> | undefined;
  const w = await writeKubeconfigFile(target, (existing) => (merged = mergeKubeconfig(existing, ours, { setCurrent: o.setCurrent, file: target })).text);
  o.stdout(`merged context ${bold(ours.names.context)} into ${w.path}\n`);
  const notes = [
    `from ${host}, server ${server}`,
    ...(merged?.replaced.length ? [`replaced ${merged.replaced.join(", ")}`] : []),
    `current context: ${merged?.currentContext ?? "none"}`,
    ...(w.narrowedFrom !== undefined ? [`mode narrowed from ${w.narrowedFrom.toString(8).padStart(4, "0")} to ${w.mode.toString(8).padStart(4, "0")}: the file holds the admin's client key`] : []),
  ];
  o.stderr(dim(`  ${notes.join("; ")}\n`));
  return { host, file: w.path };
}

/**
 * The servers in spec order: over the session's connection if it has one, else a new one
 * opened when it is that server's turn (closed with the session).
 */
function serverLinks(s: Session): { links: ServerLink[]; close(): void } {
  const opened: Transport[] = [];
  const links = s.render.topo.servers.map((h): ServerLink => ({
    host: h.name,
    async transport() {
      const t = s.transports.get(h.name);
      if (t) return t;
      const why = s.unreachable.get(h.name);
      if (why) throw new Error(why);
      const fresh = await s.reconnect.open(h.name);
      opened.push(fresh);
      return fresh;
    },
  }));
  return { links, close: () => opened.forEach((t) => t.close()) };
}

const { phase: _phase, concurrency: _concurrency, ...connectArgs } = sessionArgs;

export const kubeconfig = defineCommand({
  meta: {
    name: "kubeconfig",
    description: "Fetch the admin kubeconfig from a K3s server, point it at the API VIP (CA kept) and merge it into ~/.kube/config (or $KUBECONFIG's file, or --output) as context <cluster name>, 0600",
  },
  args: {
    ...connectArgs,
    print: { type: "boolean", description: "write the kubeconfig to stdout instead of merging it (it holds the admin's client key)", default: false },
    output: { type: "string", alias: "o", valueHint: "FILE", description: "merge into FILE instead (created 0600 if missing)" },
    "set-current": { type: "boolean", description: "make it kubectl's current context", negativeDescription: "keep kubectl's current context (one is still set if there was none)", default: true },
  },
  async run({ args }) {
    if (args.print && args.output !== undefined) throw new FmcError("USAGE", "--print and --output: choose one", "--print writes to stdout, --output FILE merges into FILE");
    // only the servers are needed; one the session could not connect to is tried again when its turn comes
    const s = await openSession({ ...sessionOptions(args as SessionArgs), hosts: (pc) => pc.render.topo.servers });
    const servers = serverLinks(s);
    try {
      await runKubeconfig(s.render, servers.links, {
        print: args.print,
        output: args.output,
        setCurrent: args["set-current"],
        env: process.env,
        home: homedir(),
        stdout: (t) => process.stdout.write(t),
        stderr: (t) => process.stderr.write(t),
      });
    } finally {
      servers.close();
      s.close();
    }
  },
});
