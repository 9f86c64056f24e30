// How fmc reads and reasons about K3s's embedded etcd: commands that ask etcd's v3 gRPC-JSON
// gateway with curl (Flatcar has curl, not etcdctl), parsers from its JSON to typed values,
// the quorum arithmetic every membership change passes first, and the order of a server
// replacement. Pure: the only I/O is through a Transport handed in by the caller.
//
// Why curl and the JSON gateway: etcd serves its v3 API as JSON over HTTP on the client port
// (POST /v3/<service>/<method>, enabled by default: embed.Config EnableGRPCGateway, which K3s
// leaves on), so one TLS-capable HTTP client is enough on every OS fmc supports. The gateway
// writes proto3 JSON: uint64 fields (member IDs, sizes, raft terms) are decimal STRINGS, since
// they overflow JavaScript numbers, `bytes` fields (keys, values) are base64, and false/zero/
// empty fields are left out (a voting member has no "isLearner"; an unstarted one no "name").
// Shapes checked against etcd 3.4.23 (Debian bookworm's etcd-server), see test/fixtures/etcd/.
// Health: GET /health exists in every etcd 3.x ({"health":"true"|"false"}, HTTP 503 when
// false); /livez and /readyz are newer (3.4 answers 404), so fmc uses /health.
import { cmd, script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { ExecResult, Transport } from "../hosts/transport.js";
import { setTimeout as sleep } from "node:timers/promises";
import { FmcError } from "../errors.js";

/**
 * Where K3s keeps its etcd client credentials, and the client URL every K3s server listens
 * on. Paths: k3s-io/k3s pkg/daemons/control/deps/deps.go (commit 09ac65a6, `runtime.ETCDServerCA
 * = <data-dir>/server/tls/etcd/server-ca.crt`, `ClientETCDCert/Key = .../etcd/client.crt|key`,
 * also `ServerETCDCert/Key = .../etcd/server-client.crt|key`); K3s's own etcd client (the
 * datastore of the apiserver) uses client.crt/client.key with server-ca.crt (pkg/etcd/etcd.go,
 * toTLSConfig and Register). client.crt is created with ExtKeyUsageClientAuth only, the least
 * a reader needs; server-client.crt (server and client usage) works as well and is what K3s's
 * bundled `k3s etcdctl` defaults to. Endpoint: pkg/etcd/etcd.go `endpoint =
 * "https://127.0.0.1:2379"`, and ListenClientURLs = "<node-ip>:2379,https://127.0.0.1:2379".
 * K3s puts 127.0.0.1, localhost, the node name and node IPs in the etcd serving certificate's
 * SANs (pkg/cli/server/server.go), so other members' client URLs verify against the same CA.
 */
export const K3S_ETCD = {
  endpoint: "https://127.0.0.1:2379",
  caFile: "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
  certFile: "/var/lib/rancher/k3s/server/tls/etcd/client.crt",
  keyFile: "/var/lib/rancher/k3s/server/tls/etcd/client.key",
} as const;

/** K3s's server database directory (k3s-io/k3s: ${data-dir}/server/db): etcd's data (db/etcd), snapshots, the reset flag. */
export const K3S_DB_DIR = "/var/lib/rancher/k3s/server/db";
/** K3s's etcd snapshot directory (--etcd-snapshot-dir default: ${data-dir}/server/db/snapshots). */
export const K3S_SNAPSHOT_DIR = `${K3S_DB_DIR}/snapshots`;

/** How to reach etcd from the host the commands run on. */
export interface EtcdAccess {
  /** Base URL of the member asked by default (scheme://host:port, no path). */
  readonly endpoint: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** curl's --max-time per request, seconds. */
  readonly timeoutS: number;
}

/** K3s's defaults with any field overridden (tests point them at their own CA and certs). */
export function etcdAccess(over: Partial<EtcdAccess> = {}): EtcdAccess {
  const a: EtcdAccess = { ...K3S_ETCD, timeoutS: 5, ...over };
  checkEndpoint(a.endpoint);
  for (const f of [a.caFile, a.certFile, a.keyFile]) {
    if (!f.startsWith("/") || /[\0\n]/.test(f)) throw new FmcError("ETCD_ACCESS", `not an absolute path: ${JSON.stringify(f)}`);
  }
  if (!Number.isInteger(a.timeoutS) || a.timeoutS < 1 || a.timeoutS > 300) throw new FmcError("ETCD_ACCESS", `timeoutS must be 1-300 seconds, not ${a.timeoutS}`);
  return a;
}

/** An etcd URL as etcd reports it (https://10.17.3.11:2379); anything else is refused before it reaches a shell. */
export function checkEndpoint(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FmcError("ETCD_ENDPOINT", `not an etcd URL: ${JSON.stringify(url)}`);
  }
  const ok = (u.protocol === "https:" || u.protocol === "http:") && u.port !== "" && (u.pathname === "/" || u.pathname === "") && !u.search && !u.hash && !u.username && !u.password && /^[A-Za-z0-9.:[\]-]+$/.test(u.host);
  if (!ok || url.endsWith("/")) throw new FmcError("ETCD_ENDPOINT", `not an etcd URL (scheme://host:port): ${JSON.stringify(url)}`);
  return url;
}

const curlBase = (a: EtcdAccess): string[] => ["curl", "-sS", "--max-time", String(a.timeoutS), "--cacert", a.caFile, "--cert", a.certFile, "--key", a.keyFile];

/** POST of a JSON body to a gateway method such as /v3/cluster/member/list. */
function gateway(a: EtcdAccess, path: string, body: unknown, endpoint = a.endpoint): Command {
  return cmd(...curlBase(a), "-X", "POST", "-H", "Content-Type: application/json", "-d", JSON.stringify(body), `${checkEndpoint(endpoint)}${path}`);
}

/** etcd member IDs are uint64, written in decimal; fmc keeps them as strings. */
function checkMemberId(id: string): string {
  if (!/^[1-9]\d{0,19}$/.test(id) || BigInt(id) > 0xffffffffffffffffn) throw new FmcError("ETCD_MEMBER_ID", `not an etcd member ID (a decimal uint64): ${JSON.stringify(id)}`);
  return id;
}

/** etcdctl and etcd's logs print member IDs in hex; K3s logs them in decimal. */
export const memberIdHex = (id: string): string => BigInt(checkMemberId(id)).toString(16);

export const memberListCommand = (a: EtcdAccess): Command => gateway(a, "/v3/cluster/member/list", {});
export const statusCommand = (a: EtcdAccess, endpoint = a.endpoint): Command => gateway(a, "/v3/maintenance/status", {}, endpoint);
export const healthCommand = (a: EtcdAccess, endpoint = a.endpoint): Command => cmd(...curlBase(a), `${checkEndpoint(endpoint)}/health`);
/** Removes a member by ID (the gateway accepts the uint64 as a JSON string). */
export const memberRemoveCommand = (a: EtcdAccess, id: string): Command => gateway(a, "/v3/cluster/member/remove", { ID: checkMemberId(id) });
/** Announces a member before it starts (etcd's two-phase add); K3s itself joins new servers as learners. */
export function memberAddCommand(a: EtcdAccess, peerURLs: readonly string[], opts: { learner?: boolean } = {}): Command {
  if (peerURLs.length === 0) throw new FmcError("ETCD_ENDPOINT", "a new member needs at least one peer URL");
  return gateway(a, "/v3/cluster/member/add", { peerURLs: peerURLs.map(checkEndpoint), ...(opts.learner ? { isLearner: true } : {}) });
}
/** Reads one key (its bytes travel base64-encoded both ways). */
export const rangeCommand = (a: EtcdAccess, key: string): Command => gateway(a, "/v3/kv/range", { key: Buffer.from(key, "utf8").toString("base64") });

/**
 * Health and status of several members in one exec: one line per request,
 * `<health|status> <endpoint> <curl exit code> <base64 of what curl printed>`.
 */
export function probeCommand(a: EtcdAccess, endpoints: readonly string[]): Command {
  const base = curlBase(a).map(quote).join(" ");
  const lines = endpoints.map((e) => {
    const q = quote(checkEndpoint(e));
    return [
      `out=$(${base} ${q}/health 2>&1); printf 'health %s %s %s\\n' ${q} "$?" "$(printf %s "$out" | base64 -w0)"`,
      `out=$(${base} -X POST -H 'Content-Type: application/json' -d '{}' ${q}/v3/maintenance/status 2>&1); printf 'status %s %s %s\\n' ${q} "$?" "$(printf %s "$out" | base64 -w0)"`,
    ].join("\n");
  });
  return script(lines.join("\n"), `etcd health and status of ${endpoints.join(", ")}`);
}

// ---------------------------------------------------------------------------------------------
// Parsers

export interface EtcdMember {
  /** uint64 in decimal, as the gateway writes it. */
  readonly id: string;
  /** etcd's member name; "" until the member has started once. K3s names it <node>-<8 hex>. */
  readonly name: string;
  /** The K3s node the member belongs to (the name without K3s's suffix). */
  readonly node: string;
  readonly peerURLs: readonly string[];
  readonly clientURLs: readonly string[];
  readonly isLearner: boolean;
  /** Whether it has started at least once (etcd's IsStarted: it published its name). */
  readonly started: boolean;
}

export interface EtcdStatus {
  /** The member that answered. */
  readonly memberId: string;
  readonly clusterId: string;
  /** Absent while the member sees no leader. */
  readonly leader?: string;
  readonly version: string;
  readonly dbSize: number;
  readonly dbSizeInUse?: number;
  readonly raftTerm: string;
  readonly raftIndex: string;
  readonly isLearner: boolean;
  /** etcd's own complaints, e.g. "etcdserver: no leader". */
  readonly errors: readonly string[];
}

export interface EtcdHealth {
  readonly endpoint: string;
  readonly healthy: boolean;
  /** Why not: curl's error or etcd's reason. */
  readonly reason?: string;
}

/** K3s names members `<node name>-<first 8 hex digits of a UUID>` (pkg/etcd/etcd.go, setName). */
export function nodeNameOf(memberName: string): string {
  const m = /^(.+)-[0-9a-f]{8}$/.exec(memberName);
  return m ? m[1]! : memberName;
}

function parseJson(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new FmcError("ETCD_RESPONSE", `${what}: etcd's answer is not JSON: ${text.trim().slice(0, 200) || "(empty)"}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new FmcError("ETCD_RESPONSE", `${what}: etcd's answer is not a JSON object`);
  const o = v as Record<string, unknown>;
  if (typeof o.error === "string" || (typeof o.message === "string" && typeof o.code === "number")) {
    const msg = String(o.message ?? o.error);
    throw new FmcError("ETCD_ERROR", `${what}: ${msg} (gRPC code ${String(o.code)})`, msg.includes("unhealthy cluster") ? "etcd refuses membership changes until every voting member has been connected for 5 s; check `fmc etcd status`" : undefined);
  }
  return o;
}

const str = (v: unknown, what: string): string => {
  if (typeof v !== "string") throw new FmcError("ETCD_RESPONSE", `${what}: expected a string, got ${JSON.stringify(v)}`);
  return v;
};
const uint = (v: unknown, what: string): string => {
  if (v === undefined) return "0";
  const s = typeof v === "number" && Number.isSafeInteger(v) ? String(v) : str(v, what);
  if (!/^\d{1,20}$/.test(s)) throw new FmcError("ETCD_RESPONSE", `${what}: expected a uint64, got ${JSON.stringify(v)}`);
  return s;
};
const strings = (v: unknown, what: string): string[] => {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new FmcError("ETCD_RESPONSE", `${what}: expected a list`);
  return v.map((x, i) => str(x, `${what}[${i}]`));
};

function parseMember(v: unknown, i: number): EtcdMember {
  if (typeof v !== "object" || v === null) throw new FmcError("ETCD_RESPONSE", `members[${i}] is not an object`);
  const m = v as Record<string, unknown>;
  const id = checkMemberId(uint(m.ID, `members[${i}].ID`));
  const name = m.name === undefined ? "" : str(m.name, `members[${i}].name`);
  return {
    id,
    name,
    node: name ? nodeNameOf(name) : "",
    peerURLs: strings(m.peerURLs, `members[${i}].peerURLs`),
    clientURLs: strings(m.clientURLs, `members[${i}].clientURLs`),
    isLearner: m.isLearner === true,
    started: name !== "",
  };
}

/** The members of a member/list, member/add or member/remove answer, sorted by name then ID. */
export function parseMembers(text: string): EtcdMember[] {
  const o = parseJson(text, "etcd member list");
  if (!Array.isArray(o.members)) throw new FmcError("ETCD_RESPONSE", "etcd member list: no members in the answer");
  const key = (m: EtcdMember) => `${m.name ? 0 : 1}${m.name}\0${m.id.padStart(20, "0")}`;
  return o.members.map(parseMember).sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}

/** The member a member/add answer announces (started: false until it runs). */
export function parseAddedMember(text: string): EtcdMember {
  const o = parseJson(text, "etcd member add");
  return parseMember(o.member, 0);
}

export function parseStatus(text: string): EtcdStatus {
  const o = parseJson(text, "etcd status");
  const header = (o.header ?? {}) as Record<string, unknown>;
  const dbSize = Number(uint(o.dbSize, "dbSize"));
  const leader = o.leader === undefined ? undefined : uint(o.leader, "leader");
  return {
    memberId: uint(header.member_id, "header.member_id"),
    clusterId: uint(header.cluster_id, "header.cluster_id"),
    ...(leader && leader !== "0" ? { leader } : {}),
    version: str(o.version, "version"),
    dbSize,
    ...(o.dbSizeInUse !== undefined ? { dbSizeInUse: Number(uint(o.dbSizeInUse, "dbSizeInUse")) } : {}),
    raftTerm: uint(o.raftTerm, "raftTerm"),
    raftIndex: uint(o.raftIndex, "raftIndex"),
    isLearner: o.isLearner === true,
    errors: strings(o.errors, "errors"),
  };
}

/** GET /health as curl ran it: a failed connection is an unhealthy member, not an error. */
export function parseHealth(endpoint: string, res: Pick<ExecResult, "code" | "stdout" | "stderr">): EtcdHealth {
  if (res.code !== 0) return { endpoint, healthy: false, reason: (res.stderr || res.stdout).trim() || `curl exited ${res.code}` };
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(res.stdout) as Record<string, unknown>;
  } catch {
    return { endpoint, healthy: false, reason: `not a health answer: ${res.stdout.trim().slice(0, 200)}` };
  }
  // "true" in etcd 3.4/3.5, a boolean in later versions.
  const healthy = o.health === "true" || o.health === true;
  const reason = typeof o.reason === "string" && o.reason ? o.reason : healthy ? undefined : "etcd reports health false (no leader, an alarm, or no quorum)";
  return { endpoint, healthy, ...(reason ? { reason } : {}) };
}

/** The value of a key from a kv/range answer, or undefined when the key does not exist. */
export function parseRangeValue(text: string): string | undefined {
  const o = parseJson(text, "etcd range");
  if (o.kvs === undefined) return undefined;
  if (!Array.isArray(o.kvs)) throw new FmcError("ETCD_RESPONSE", "etcd range: kvs is not a list");
  const kv = o.kvs[0] as Record<string, unknown> | undefined;
  return kv ? Buffer.from(kv.value === undefined ? "" : str(kv.value, "kvs[0].value"), "base64").toString("utf8") : undefined;
}

export interface ProbeResult {
  readonly health: EtcdHealth;
  /** Absent when the member did not answer its status. */
  readonly status?: EtcdStatus;
  readonly statusError?: string;
}

/** The output of probeCommand, per endpoint. */
export function parseProbe(stdout: string): Map<string, ProbeResult> {
  const raw = new Map<string, { health?: EtcdHealth; status?: EtcdStatus; statusError?: string }>();
  for (const line of stdout.split("\n")) {
    if (!line.trim()) continue;
    const m = /^(health|status) (\S+) (\d+) ([A-Za-z0-9+/=]*)$/.exec(line);
    if (!m) throw new FmcError("ETCD_RESPONSE", `etcd probe: unexpected line ${JSON.stringify(line.slice(0, 200))}`);
    const [, kind, endpoint, code, b64] = m as unknown as [string, "health" | "status", string, string, string];
    const body = Buffer.from(b64, "base64").toString("utf8");
    const r = raw.get(endpoint) ?? {};
    if (kind === "health") r.health = parseHealth(endpoint, { code: Number(code), stdout: code === "0" ? body : "", stderr: code === "0" ? "" : body });
    else if (code !== "0") r.statusError = body.trim() || `curl exited ${code}`;
    else {
      try {
        r.status = parseStatus(body);
      } catch (e) {
        r.statusError = (e as Error).message;
      }
    }
    raw.set(endpoint, r);
  }
  const out = new Map<string, ProbeResult>();
  for (const [endpoint, r] of raw) {
    if (!r.health) throw new FmcError("ETCD_RESPONSE", `etcd probe: no health line for ${endpoint}`);
    out.set(endpoint, { health: r.health, ...(r.status ? { status: r.status } : {}), ...(r.statusError ? { statusError: r.statusError } : {}) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading the whole cluster through a transport

export interface EtcdMemberView extends EtcdMember {
  readonly healthy: boolean;
  readonly reason?: string;
  readonly status?: EtcdStatus;
  readonly isLeader: boolean;
}

export interface EtcdClusterView {
  readonly members: readonly EtcdMemberView[];
  /** The leader's member ID as the healthy members report it. */
  readonly leader?: string;
  /** IDs of the members whose /health is true: the `healthy` argument of quorumCheck. */
  readonly healthy: ReadonlySet<string>;
}

/** Member list from the local member, then health and status of every member, in two execs. */
export async function readCluster(t: Transport, a: EtcdAccess): Promise<EtcdClusterView> {
  const list = await t.exec(memberListCommand(a), "etcd member list");
  if (list.code !== 0) throw new FmcError("ETCD_UNREACHABLE", `${t.host}: etcd at ${a.endpoint} did not answer: ${(list.stderr || list.stdout).trim()}`, "is K3s running on this server? (systemctl status k3s)");
  const members = parseMembers(list.stdout);
  const endpoints = [...new Set(members.flatMap((m) => m.clientURLs.slice(0, 1)))];
  const probed = endpoints.length ? await t.exec(probeCommand(a, endpoints), "etcd health") : { code: 0, stdout: "", stderr: "" };
  if (probed.code !== 0) throw new FmcError("ETCD_UNREACHABLE", `${t.host}: the etcd health probe failed: ${probed.stderr.trim()}`);
  const probes = parseProbe(probed.stdout);
  const leaders = new Set([...probes.values()].flatMap((p) => (p.health.healthy && p.status?.leader ? [p.status.leader] : [])));
  const leader = leaders.size === 1 ? [...leaders][0] : undefined;
  const views = members.map((m): EtcdMemberView => {
    const p = m.clientURLs[0] ? probes.get(m.clientURLs[0]) : undefined;
    const reason = p ? p.health.reason : m.started ? "no client URL" : "not started yet";
    return { ...m, healthy: p?.health.healthy ?? false, ...(reason ? { reason } : {}), ...(p?.status ? { status: p.status } : {}), isLeader: m.id === leader };
  });
  return { members: views, ...(leader ? { leader } : {}), healthy: new Set(views.filter((v) => v.healthy).map((v) => v.id)) };
}

/**
 * etcd as the first of `servers` that answers reads it (tried in order, `exclude` skipped),
 * and which server that was; every failure is in the error when none answers.
 */
export async function readClusterVia(servers: readonly string[], transports: ReadonlyMap<string, Transport>, o: { exclude?: readonly string[]; unreachable?: ReadonlyMap<string, string>; access?: EtcdAccess } = {}): Promise<{ via: string; cluster: EtcdClusterView }> {
  const exclude = o.exclude ?? [];
  const errors: string[] = [...(o.unreachable ?? [])].map(([h, why]) => `${h}: ${why}`);
  for (const name of servers.filter((x) => !exclude.includes(x))) {
    const t = transports.get(name);
    if (!t) continue;
    try {
      return { via: name, cluster: await readCluster(t, o.access ?? etcdAccess()) };
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  throw new FmcError("ETCD_UNREACHABLE", `no K3s server${exclude.length ? ` other than ${exclude.join(", ")}` : ""} answered for etcd:\n${errors.join("\n")}`, "fmc etcd status");
}

/** Reads etcd through `t` until `node`'s member is a started, healthy voting member. */
export async function untilVotingMember(transport: Transport | undefined, access: EtcdAccess, node: string, seconds: number, everyS: number): Promise<string> {
  if (!transport) throw new FmcError("UNREACHABLE", `${node} is not connected`);
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    let why: string;
    try {
      const v = await readCluster(transport, access);
      const m = v.members.find((x) => isMember(x, node));
      why = !m ? `${node} is not an etcd member yet` : !m.started ? `${node}'s member has not started` : m.isLearner ? `${node}'s member is still a learner` : !m.healthy ? `${node}'s member is unhealthy (${m.reason ?? "no reason given"})` : "";
      if (!why) return `${memberLabel(m!)} is a healthy voting member; etcd has ${v.members.length} member${v.members.length === 1 ? "" : "s"}`;
    } catch (e) {
      why = (e as Error).message;
    }
    if (Date.now() >= deadline) throw new FmcError("ETCD_WAIT", `not done after ${seconds} s: ${why}`);
    await sleep(everyS * 1000);
  }
}

// ---------------------------------------------------------------------------------------------
// Quorum arithmetic
//
// etcd's rules, from etcd-io/etcd server/etcdserver/server.go (mayAddMember, mayRemoveMember,
// mayPromoteMember; v3.4 and v3.5, --strict-reconfig-check on by default) and
// server/etcdserver/api/membership/cluster.go (IsReadyToAddVotingMember, IsReadyToRemoveVotingMember):
// - quorum of n voting members = floor(n/2)+1; learners do not vote and do not count.
// - removing a voting member is allowed only if the members left that are up still reach the
//   quorum of the smaller cluster (mayRemoveMember: active-1 >= 1+(n-1)/2; a member that is
//   down may go, as long as the rest reach quorum). Removing a learner never changes quorum.
// - adding a member (voting or learner) is refused while any voting member is unreachable
//   (mayAddMember: isConnectedFullySince), because a new voting member counts towards the
//   quorum before it has started: 3 members with 1 down plus 1 new = 4, quorum 3, 2 up.
// - etcd 3.4/3.5 allow one learner at a time (ErrTooManyLearners).
// The operator's guide says the same: https://etcd.io/docs/v3.5/op-guide/runtime-configuration/
// ("Strict reconfiguration check", "Replace a failed machine": remove the failed member first,
// then add the new one). fmc checks against members' /health rather than etcd's "started",
// so it refuses before etcd would, and also refuses planned stops (upgrades, reboots) that
// would take the cluster below quorum, which etcd cannot see coming.

export type EtcdChange =
  | { readonly kind: "remove"; readonly member: string }
  | { readonly kind: "stop"; readonly member: string }
  | { readonly kind: "add"; readonly name: string; readonly learner?: boolean };

export interface QuorumVerdict {
  readonly ok: boolean;
  /** The arithmetic in one sentence, ending in "allowed" or "refused". */
  readonly text: string;
}

export const quorumOf = (voters: number): number => Math.floor(voters / 2) + 1;

/** A member's name for people: the K3s node, or the peer URL of one that never started. */
export function memberLabel(m: EtcdMember): string {
  return m.node || m.name || (m.peerURLs[0] ? `unstarted ${m.peerURLs[0]}` : `member ${memberIdHex(m.id)}`);
}

/** Whether `ref` names member m: its decimal or hex ID, its etcd name or its K3s node name. */
export function isMember(m: EtcdMember, ref: string): boolean {
  const hex = /^\d{1,20}$/.test(m.id) ? BigInt(m.id).toString(16) : "";
  return ref !== "" && (ref === m.id || ref === m.name || ref === m.node || (hex !== "" && ref.toLowerCase() === hex));
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * Whether etcd keeps quorum through `change`. `healthy` holds the members whose /health is
 * true, by any reference isMember accepts (readCluster's `healthy` gives IDs).
 */
export function quorumCheck(members: readonly EtcdMember[], healthy: ReadonlySet<string> | readonly string[], change: EtcdChange): QuorumVerdict {
  const refs = [...healthy];
  const isUp = (m: EtcdMember) => refs.some((r) => isMember(m, r));
  const voters = members.filter((m) => !m.isLearner);
  const learners = members.filter((m) => m.isLearner);
  const n = voters.length;
  const q = quorumOf(n);
  const down = voters.filter((m) => !isUp(m));
  const up = n - down.length;
  const head =
    `${plural(n, "member")}${learners.length ? ` (+${plural(learners.length, "learner")})` : ""}, quorum ${q}; ` +
    (down.length ? `${down.length} unhealthy (${down.map(memberLabel).join(", ")})` : "all healthy");
  const verdict = (ok: boolean, tail: string): QuorumVerdict => ({ ok, text: `${head}; ${tail}: ${ok ? "allowed" : "refused"}` });

  if (n === 0) return { ok: false, text: "no voting members listed: refused" };
  if (up < q) return verdict(false, `only ${up} healthy, below quorum ${q}, so etcd cannot commit any change (restore from a snapshot)`);

  if (change.kind === "add") {
    const what = `adding ${change.name}${change.learner ? " as a learner" : ""}`;
    const existing = members.find((m) => isMember(m, change.name));
    if (existing) return verdict(false, `${change.name} is already a member (${memberLabel(existing)}${existing.isLearner ? ", learner" : ""})`);
    if (down.length) {
      const why = change.learner
        ? "refuses any add until every voting member is connected"
        : `refuses it (until ${change.name} starts: ${up} healthy of ${plural(n + 1, "member")}, quorum ${quorumOf(n + 1)})`;
      return verdict(false, `${what} while ${down.length} ${down.length === 1 ? "is" : "are"} unhealthy: etcd's strict reconfiguration check ${why}; remove or repair the unhealthy member first`);
    }
    if (change.learner) {
      if (learners.length) return verdict(false, `${what}: ${memberLabel(learners[0]!)} is still a learner and etcd allows one at a time`);
      return verdict(true, `${what} keeps ${plural(n, "voting member")}, quorum ${q} (a learner votes only once promoted, then ${n + 1} members, quorum ${quorumOf(n + 1)})`);
    }
    const n2 = n + 1;
    const q2 = quorumOf(n2);
    return verdict(up >= q2, `${what} makes ${plural(n2, "member")}, quorum ${q2}, with ${up} healthy until it starts${up >= q2 ? "" : " (add it as a learner instead, as K3s does)"}`);
  }

  const target = members.find((m) => isMember(m, change.member));
  if (!target) return { ok: false, text: `${head}; ${change.member} is not an etcd member: refused` };
  const label = memberLabel(target);
  if (target.isLearner) return verdict(true, `${change.kind === "remove" ? "removing" : "stopping"} learner ${label} leaves ${plural(n, "voting member")}, quorum ${q}`);
  const up2 = up - (isUp(target) ? 1 : 0);
  if (change.kind === "stop") return verdict(up2 >= q, `stopping ${label} leaves ${up2} healthy of ${plural(n, "member")}, quorum ${q}`);
  const n2 = n - 1;
  if (n2 === 0) return verdict(false, `removing ${label} would leave no members`);
  const q2 = quorumOf(n2);
  return verdict(up2 >= q2, `removing ${label} leaves ${up2} healthy of ${plural(n2, "member")}, quorum ${q2}`);
}

// ---------------------------------------------------------------------------------------------
// Replacing a server

export type ReplacementAction = "check" | "join" | "wait-healthy" | "drain" | "stop" | "remove-member" | "delete-node";

export interface ReplacementStep {
  readonly action: ReplacementAction;
  /** The K3s node the step acts on. */
  readonly node: string;
  readonly text: string;
  /** For "check": the change to verify again (re-read members and health first) right before the next step. */
  readonly change?: EtcdChange;
  /** For "check": the verdict on the state this plan expects at that point. */
  readonly verdict?: QuorumVerdict;
}

export type ReplacementPlan = { readonly ok: true; readonly steps: readonly ReplacementStep[] } | { readonly ok: false; readonly text: string; readonly steps: readonly ReplacementStep[] };

/**
 * The order of replacing server `oldRef` by `newNode`. Healthy old server: add the new one
 * first (K3s joins it as a learner and promotes it), wait until it is a healthy voting member,
 * then drain, stop and remove the old one, so the cluster never has fewer healthy members than
 * before. Unhealthy old server: etcd refuses any add while a voting member is down, and a dead
 * member already costs its vote, so remove it first and then add the new one (etcd's "Replace a
 * failed machine"). Every check is evaluated on the state expected at that point; a refusal
 * returns the steps up to it.
 */
export function replacementSteps(members: readonly EtcdMember[], healthy: ReadonlySet<string> | readonly string[], oldRef: string, newNode: string): ReplacementPlan {
  const old = members.find((m) => isMember(m, oldRef));
  if (!old) return { ok: false, text: `${oldRef} is not an etcd member`, steps: [] };
  const label = memberLabel(old);
  let state = [...members];
  let up = new Set(members.filter((m) => [...healthy].some((r) => isMember(m, r))).map((m) => m.id));
  const steps: ReplacementStep[] = [];
  const check = (change: EtcdChange, node: string): boolean => {
    const verdict = quorumCheck(state, up, change);
    steps.push({ action: "check", node, text: `quorum check: ${verdict.text}`, change, verdict });
    return verdict.ok;
  };
  const refused = (): ReplacementPlan => ({ ok: false, text: steps[steps.length - 1]!.verdict!.text, steps });
  const newId = `new:${newNode}`; // stands for the member K3s will add (etcd assigns its ID)
  const joinSteps = (): boolean => {
    if (!check({ kind: "add", name: newNode, learner: true }, newNode)) return false;
    steps.push({ action: "join", node: newNode, text: `install K3s on ${newNode} joining through the VIP; K3s adds its etcd member as a learner and promotes it once it has caught up` });
    steps.push({ action: "wait-healthy", node: newNode, text: `wait until ${newNode}'s etcd member is a voting member and /health is true on every member` });
    state = [...state, { id: newId, name: newNode, node: newNode, peerURLs: [], clientURLs: [], isLearner: false, started: true }];
    up = new Set([...up, newId]);
    return true;
  };
  const removeSteps = (): boolean => {
    const wasUp = up.has(old.id);
    if (!check(wasUp ? { kind: "stop", member: old.id } : { kind: "remove", member: old.id }, label)) return false;
    steps.push({ action: "drain", node: label, text: `cordon and drain ${label}` });
    steps.push({ action: "stop", node: label, text: `stop and disable k3s on ${label}, so it cannot rejoin once its member is gone` });
    up = new Set([...up].filter((id) => id !== old.id));
    if (wasUp && !check({ kind: "remove", member: old.id }, label)) return false;
    steps.push({ action: "remove-member", node: label, text: `remove etcd member ${memberIdHex(old.id)} (${old.name || label}) through /v3/cluster/member/remove` });
    steps.push({ action: "delete-node", node: label, text: `delete node ${label} from Kubernetes` });
    state = state.filter((m) => m.id !== old.id);
    return true;
  };
  const oldUp = up.has(old.id);
  const ok = oldUp ? joinSteps() && removeSteps() : removeSteps() && joinSteps();
  return ok ? { ok: true, steps } : refused();
}
