// fmc certs: the expiry of every K3s and etcd certificate on every K3s server (src/runbooks/certs.ts
// reads them), each certificate once per server, with K3s's verdict: expired, inside the
// renewal window (a K3s restart renews a leaf certificate there; a CA is never renewed
// automatically), or ok. The window defaults to the one of the spec's pinned K3s version
// (120 days from the May 2025 releases, 90 before). Exit 1 when a certificate is expired,
// inside the window or not yet valid, or a server could not be read.
//
// fmc certs rotate: new certificates and keys on every node (`k3s certificate rotate`, the CAs
// stay) in a safe order, as a runbook (src/runbooks/certs.ts certsRotateRunbook): etcd read first,
// the whole order printed (--plan stops there), confirmed once (--yes), servers one at a time
// while etcd keeps quorum, then agents, each waited for, stopping at the first failure.
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession } from "../engine/session.js";
import { certListCommand, certsRotateRunbook, classifyCert, distinctCerts, K3S_DATA_DIR, k3sRenewalDays, parseCertListing, rotatedNote, type CertCheck, type CertListing } from "../runbooks/certs.js";
import { carryOut } from "./runbook-cli.js";
import { bold, dim, red, yellow } from "./ui.js";
import { sessionArgs, sessionOptions } from "./session-args.js";
import { k3sNodes, serversEtcd } from "./upgrade-commands.js";

/** What one server answered: its listing, or why there is none. */
export interface ServerCerts {
  readonly server: string;
  readonly listing?: CertListing;
  readonly error?: string;
}

export interface ServerCertsView {
  readonly server: string;
  readonly checks: readonly CertCheck[];
  readonly missingDirs: readonly string[];
  readonly problems: readonly string[];
  readonly error?: string;
}

export interface CertsView {
  /** ISO 8601: the time the verdicts are for. */
  readonly now: string;
  readonly windowDays: number;
  readonly servers: readonly ServerCertsView[];
}

/** Every server's certificates, each once, classified at `now`. */
export function certsView(servers: readonly ServerCerts[], now: Date, windowDays: number): CertsView {
  return {
    now: now.toISOString(),
    windowDays,
    servers: servers.map((s) => {
      if (!s.listing) return { server: s.server, checks: [], missingDirs: [], problems: [], error: s.error ?? "not read" };
      const checks = distinctCerts(s.listing.certs).map((c) => classifyCert(c, now, windowDays));
      const error = checks.length === 0 && s.listing.problems.length === 0 ? `no certificates in ${[...s.listing.dirs, ...s.listing.missingDirs].join(", ")} (is K3s installed?)` : s.error;
      return { server: s.server, checks, missingDirs: s.listing.missingDirs, problems: s.listing.problems, ...(error ? { error } : {}) };
    }),
  };
}

/** 1 when anything needs a person: a certificate not ok, a server not read, a file not parsed. */
export function certsExitCode(v: CertsView): 0 | 1 {
  return v.servers.every((s) => !s.error && s.problems.length === 0 && s.checks.every((c) => c.status === "ok")) ? 0 : 1;
}

const when = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function verdict(c: CertCheck, windowDays: number): string {
  const why = c.renewedOnRestart ? "a K3s restart renews it" : "a CA, never renewed automatically";
  switch (c.status) {
    case "ok":
      return "ok";
    case "renew":
      return `within ${windowDays} days: ${why}`;
    case "expired":
      return `EXPIRED: ${why}`;
    case "not-yet-valid":
      return "NOT YET VALID: check the server's clock";
  }
}

/** The view as a table; pure, so tests read what a user reads. Paths are shown below `dataDir`. */
export function certsText(v: CertsView, o: { dataDir?: string; version?: string } = {}): string {
  const dataDir = `${(o.dataDir ?? K3S_DATA_DIR).replace(/\/$/, "")}/`;
  const short = (p: string) => (p.startsWith(dataDir) ? p.slice(dataDir.length) : p);
  const all = v.servers.flatMap((s) => s.checks);
  const pathW = Math.min(48, Math.max(4, ...all.map((c) => short(c.path).length)));
  const subjW = Math.min(36, Math.max(7, ...all.map((c) => c.subject.length)));
  const out: string[] = [];
  for (const s of v.servers) {
    out.push(s.server);
    for (const c of s.checks) {
      const copies = c.alsoIn.length ? ` (+${c.alsoIn.length} ${c.alsoIn.length === 1 ? "copy" : "copies"})` : "";
      out.push(`  ${cut(short(c.path), pathW).padEnd(pathW)}  ${cut(c.subject, subjW).padEnd(subjW)}  ${c.ca ? "CA  " : "leaf"}  ${when(c.notAfter)}  ${`${c.daysLeft} d`.padStart(7)}  ${verdict(c, v.windowDays)}${copies}`);
    }
    for (const p of s.problems) out.push(`  problem: ${p}`);
    if (s.error) out.push(`  error: ${s.error}`);
  }
  const count = (f: (c: CertCheck) => boolean) => all.filter(f).length;
  const expired = count((c) => c.status === "expired");
  const inWindow = count((c) => c.status === "renew");
  const early = count((c) => c.status === "not-yet-valid");
  const read = v.servers.filter((s) => !s.error).length;
  out.push(
    `${all.length} certificate${all.length === 1 ? "" : "s"} on ${read} of ${v.servers.length} server${v.servers.length === 1 ? "" : "s"}: ${expired} expired, ${inWindow} within ${v.windowDays} days, ${early ? `${early} not yet valid, ` : ""}${count((c) => c.status === "ok")} ok`,
  );
  const due = (ca: boolean) => v.servers.filter((s) => s.checks.some((c) => c.ca === ca && (c.status === "renew" || c.status === "expired"))).map((s) => s.server);
  const leafServers = due(false);
  const renewDays = o.version ? k3sRenewalDays(o.version) : v.windowDays;
  if (leafServers.length) out.push(`  restart K3s on ${leafServers.join(", ")}, one server at a time: on start K3s renews the leaf certificates that are expired or within ${renewDays} days of expiry`);
  const caServers = due(true);
  if (caServers.length) out.push(`  CA certificates on ${caServers.join(", ")} are never renewed automatically: k3s certificate rotate-ca (docs.k3s.io/cli/certificate)`);
  out.push("");
  return out.join("\n");
}

const { phase: _phase, ...args } = sessionArgs;
/** `fmc certs` has a subcommand: its spec is named with -f (a word after it is a subcommand's name). */
const { spec: _spec, ...listArgs } = args;

/** Set once `fmc certs rotate` runs: citty runs the parent command's `run` after a subcommand's. */
let subcommandRan = false;

const certsRotate = defineCommand({
  meta: {
    name: "rotate",
    description:
      "New K3s client and server certificates and keys on every node (k3s certificate rotate; the CAs stay): servers one at a time, each only while etcd keeps quorum without it (re-checked right before), stopped, rotated, started and healthy again before the next; then the agents, each stopped, rotated, started and Ready again; stops at the first failure. --plan shows the exact order and changes nothing",
  },
  args: {
    ...args,
    plan: { type: "boolean", description: "show the checks and the exact order, change nothing", default: false },
    yes: { type: "boolean", alias: "y", description: "do not ask for confirmation", default: false },
  },
  async run({ args: a }) {
    subcommandRan = true;
    const s = await openSession({ ...sessionOptions(a), hosts: k3sNodes });
    try {
      const { via, cluster } = await serversEtcd(s);
      const rb = certsRotateRunbook(s.render, cluster, { via });
      const missing = k3sNodes(s.pc).filter((h) => !s.transports.has(h.name));
      if (missing.length && !a.plan) throw new FmcError("UNREACHABLE", `every K3s node is rotated, and ${missing.map((h) => `${h.name} (${s.unreachable.get(h.name) ?? "not in the inventory"})`).join(", ")} does not answer`, "fmc certs rotate --plan shows the order meanwhile");
      const done = await carryOut({
        heading: rb.heading,
        steps: rb.steps,
        transports: s.transports,
        plan: a.plan,
        yes: a.yes,
        question: `Rotate the K3s certificates on ${k3sNodes(s.pc).length} node(s)?`,
        stateDir: s.stateDir,
        what: "certs rotate",
      });
      if (done) process.stdout.write(rotatedNote);
    } finally {
      s.close();
    }
  },
});

export const certs = defineCommand({
  meta: {
    name: "certs",
    description:
      "Expiry of every K3s and etcd certificate on every K3s server; exit 1 when one is expired or within the warning window (K3s renews leaf certificates on restart inside it; CAs never). fmc certs rotate makes new ones on every node",
  },
  subCommands: { rotate: certsRotate },
  args: {
    ...listArgs,
    json: { type: "boolean", description: "machine-readable on stdout", default: false },
    "warn-days": { type: "string", description: "warning window in days (default: K3s's renewal window for the spec's version: 120 from v1.33.1/v1.32.5/v1.31.9/v1.30.13, 90 before)" },
  },
  async run({ args: a }) {
    if (subcommandRan) return;
    const warn = a["warn-days"];
    if (warn !== undefined && !/^\d{1,4}$/.test(warn)) throw new FmcError("USAGE", `--warn-days ${warn}: whole days from 0 to 3650 please`);
    const s = await openSession({ ...sessionOptions(a), hosts: (pc) => pc.render.topo.servers });
    try {
      const version = s.render.spec.k3s.version;
      const windowDays = warn !== undefined ? Number(warn) : k3sRenewalDays(version);
      if (windowDays > 3650) throw new FmcError("USAGE", `--warn-days ${warn}: whole days from 0 to 3650 please`);
      const command = certListCommand();
      const answers: ServerCerts[] = await Promise.all(
        s.render.topo.servers.map(async (server): Promise<ServerCerts> => {
          const t = s.transports.get(server.name);
          if (!t) return { server: server.name, error: `unreachable: ${s.unreachable.get(server.name) ?? "no connection"}` };
          try {
            const r = await t.exec(command, "certificate listing");
            if (r.code !== 0) return { server: server.name, error: `listing failed (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-2).join(" / ")}` };
            return { server: server.name, listing: parseCertListing(r.stdout) };
          } catch (e) {
            return { server: server.name, error: (e as Error).message };
          }
        }),
      );
      if (answers.length === 0) throw new FmcError("NO_SERVERS", "the spec has no k3s-server hosts");
      const view = certsView(answers, new Date(), windowDays);
      if (a.json) process.stdout.write(`${JSON.stringify({ ...view, k3sVersion: version }, null, 2)}\n`);
      else {
        process.stdout.write(
          certsText(view, { version })
            .replace(/(EXPIRED|NOT YET VALID)[^\n]*/g, (m) => red(m))
            .replace(/within \d+ days: [^\n]*/g, (m) => yellow(m))
            .replace(/^ {2}(error|problem): [^\n]*/gm, (m) => red(m))
            .replace(/^(\S+)$/gm, (m) => bold(m)),
        );
        const missing = view.servers.filter((x) => x.missingDirs.length);
        if (missing.length) process.stderr.write(dim(`  not present (fine for a server without them): ${missing.map((x) => `${x.server}: ${x.missingDirs.join(", ")}`).join("; ")}\n`));
      }
      process.exitCode = certsExitCode(view);
    } finally {
      s.close();
    }
  },
});
