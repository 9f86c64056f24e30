// How fmc reads the expiry of K3s's certificates on a server: one command that prints every
// certificate under K3s's TLS directories (certificates only: private keys never leave the
// host), a parser that reads them here with Node's X.509 parser, and the classification
// K3s itself makes (expired, inside the renewal window, ok), against an injectable `now`.
//
// Where the certificates are (data dir /var/lib/rancher/k3s):
// - server/tls/*.crt: the cluster CAs (server-ca, client-ca, request-header-ca) and the
//   control plane's client and serving certificates; server/tls/etcd/*.crt: etcd's CAs
//   (server-ca, peer-ca) and server-client, client, peer-server-client. k3s-io/k3s
//   pkg/daemons/control/deps/deps.go (CreateRuntimeCertFiles: `filepath.Join(DataDir, "tls",
//   …)` and `"tls", "etcd", …`).
// - agent/*.crt: the kubelet's, kube-proxy's and k3s-controller's client certificates and
//   serving-kubelet.crt, plus copies of the CAs; every server runs an agent too. k3s-io/k3s
//   pkg/util/services/services.go (FilesForServices: `agentDataDir = DataDir/../agent`,
//   client-kubelet.crt, serving-kubelet.crt, client-kube-proxy.crt, client-k3s-controller.crt).
// - server/tls/dynamic-cert.json: the supervisor/apiserver listener's certificate on :6443
//   ("k3s-serving"), cached by rancher/dynamiclistener as a JSON Kubernetes Secret
//   (storage/file/file.go: json.NewEncoder(secret)); only its data."tls.crt" is read.
// Each K3s leaf file holds the leaf followed by its CA chain ("Each certificate file contains
// at least two certificates", docs.k3s.io/cli/certificate), so every PEM block is read and the
// same certificate found in several files is reported once.
//
// Why no openssl on the host: Flatcar ships /usr/bin/openssl (flatcar/scripts coreos-base/
// coreos/coreos-0.0.1.ebuild RDEPEND dev-libs/openssl), but a minimal Debian (the lab's
// debootstrap minbase hosts) has none, and its text output would have to be parsed anyway.
// The command needs only bash, sed, grep and base64, which every OS fmc supports has; the
// dates, subject and CA flag come from node:crypto's X509Certificate. By hand on a host:
//   for f in /var/lib/rancher/k3s/{server/tls,server/tls/etcd,agent}/*.crt; do echo "$f"; \
//     openssl x509 -noout -subject -enddate -ext basicConstraints -in "$f"; done
//
// The window: "Any certificates that are expired or within 120 days of expiring are
// automatically renewed every time K3s starts … Prior to the May 2025 releases (v1.33.1+k3s1,
// v1.32.5+k3s1, v1.31.9+k3s1, v1.30.13+k3s1), alerts and rotation were triggered at 90 days"
// (docs.k3s.io/cli/certificate, k3s-io/docs docs/cli/certificate.md; k3s-io/k3s#12232 set
// CertificateRenewDays = 120 in pkg/daemons/config/types.go). CA certificates "are valid for
// 10 years from date of issuance, and are not automatically renewed" (same page): only
// `k3s certificate rotate-ca` replaces them. Status rules as K3s's own `k3s certificate
// check` (pkg/util/cert.go GetCertStatus): not yet valid when now < notBefore, expired when
// now > notAfter, warning when notAfter < now + window.
import { X509Certificate } from "node:crypto";
import { script, slow, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { ExecResult } from "../hosts/transport.js";
import { FmcError } from "../errors.js";
import type { ClusterContext } from "../state/context.js";
import { quorumCheck, type EtcdAccess, type EtcdClusterView } from "../k3s/etcd.js";
import { AGENT_UNIT, k3sCli, SERVER_READY_S, SERVER_UNIT } from "../k3s/k3s-cli.js";
import { nodeReadyStep, quorumStep, serverWaitStep, unitCommand, type WaitOptions } from "./k3s-steps.js";
import type { RunbookStep } from "./runbook.js";

/** K3s's default data directory (--data-dir). */
export const K3S_DATA_DIR = "/var/lib/rancher/k3s";

/** Where the listing looks on a server. */
export interface CertLocations {
  /** Directories whose *.crt files are read (not recursively: server/tls-<time> backups stay out). */
  readonly dirs: readonly string[];
  /** dynamiclistener's cache of the :6443 certificate (JSON), when present. */
  readonly dynamicCert?: string;
}

/** K3s's certificate locations under a data directory. */
export function k3sCertLocations(dataDir: string = K3S_DATA_DIR): CertLocations {
  return {
    dirs: [`${dataDir}/server/tls`, `${dataDir}/server/tls/etcd`, `${dataDir}/agent`],
    dynamicCert: `${dataDir}/server/tls/dynamic-cert.json`,
  };
}

const MARK = "fmc-cert";
const checkPath = (p: string): string => {
  if (!p.startsWith("/") || /[\0\n\t]/.test(p)) throw new FmcError("CERTS_PATH", `not an absolute path: ${JSON.stringify(p)}`);
  return p;
};

/**
 * Prints, per directory and file: `fmc-cert<TAB>dir|missing|file|unreadable<TAB>path`, each
 * `file` line followed by the file's CERTIFICATE blocks (nothing else of it: a key in the
 * same file stays on the host). Read-only; exits 0 whatever it finds.
 */
export function certListCommand(loc: CertLocations = k3sCertLocations()): Command {
  const dirs = loc.dirs.map(checkPath);
  const lines = [
    "set -u",
    `pem() { sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$1"; }`,
    `for d in ${dirs.map(quote).join(" ")}; do`,
    `  if [ ! -d "$d" ]; then printf '${MARK}\\tmissing\\t%s\\n' "$d"; continue; fi`,
    `  printf '${MARK}\\tdir\\t%s\\n' "$d"`,
    `  for f in "$d"/*.crt; do`,
    `    [ -f "$f" ] || continue`,
    `    if [ ! -r "$f" ]; then printf '${MARK}\\tunreadable\\t%s\\n' "$f"; continue; fi`,
    `    printf '${MARK}\\tfile\\t%s\\n' "$f"`,
    `    pem "$f"`,
    "  done",
    "done",
  ];
  if (loc.dynamicCert) {
    const j = quote(checkPath(loc.dynamicCert));
    // data."tls.crt" of the Secret: base64 of PEM; tls.key is never decoded
    lines.push(
      `if [ -f ${j} ]; then`,
      `  printf '${MARK}\\tfile\\t%s\\n' ${j}`,
      `  grep -o '"tls\\.crt":"[A-Za-z0-9+/=]*"' ${j} | head -n 1 | sed 's/^"tls\\.crt":"//; s/"$//' | base64 -d 2>/dev/null | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p'`,
      "fi",
    );
  }
  lines.push("exit 0");
  return script(lines.join("\n"), `list K3s's certificates (${[...dirs, ...(loc.dynamicCert ? [loc.dynamicCert] : [])].join(", ")})`);
}

/** One certificate as read from a file. */
export interface CertRecord {
  readonly path: string;
  /** Its place in the file: 0 is the leaf of a chain file. */
  readonly index: number;
  /** The subject's common name (the whole subject when it has none). */
  readonly subject: string;
  readonly issuer: string;
  /** ISO 8601, UTC. */
  readonly notBefore: string;
  readonly notAfter: string;
  /** basicConstraints CA:TRUE. */
  readonly ca: boolean;
  readonly fingerprint256: string;
}

export interface CertListing {
  readonly certs: readonly CertRecord[];
  /** Directories that were searched. */
  readonly dirs: readonly string[];
  readonly missingDirs: readonly string[];
  /** Files and certificates that could not be read, with why. */
  readonly problems: readonly string[];
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** OpenSSL's time as Node prints it ("Nov  1 03:06:35 2024 GMT") to ISO 8601. */
export function x509Time(t: string): string {
  const m = /^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}) GMT$/.exec(t);
  const month = m ? MONTHS.indexOf(m[1]!) : -1;
  if (!m || month < 0) throw new FmcError("CERTS_PARSE", `not a certificate time: ${JSON.stringify(t)}`);
  return new Date(Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]))).toISOString();
}

const commonName = (dn: string): string => {
  const parts = dn.split("\n").filter(Boolean);
  const cn = parts.find((p) => p.startsWith("CN="));
  return cn ? cn.slice(3) : parts.join(", ");
};

/** What certListCommand printed, as records; a block that does not parse becomes a problem. */
export function parseCertListing(stdout: string): CertListing {
  const certs: CertRecord[] = [];
  const dirs: string[] = [];
  const missingDirs: string[] = [];
  const problems: string[] = [];
  let file: string | undefined;
  let index = 0;
  let block: string[] | undefined;
  for (const raw of stdout.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line.startsWith(`${MARK}\t`)) {
      const [, kind, path = ""] = line.split("\t");
      if (block) problems.push(`${file}: a certificate without its END line`);
      block = undefined;
      file = undefined;
      if (kind === "dir") dirs.push(path);
      else if (kind === "missing") missingDirs.push(path);
      else if (kind === "unreadable") problems.push(`${path}: not readable`);
      else if (kind === "file") {
        file = path;
        index = 0;
      }
      continue;
    }
    if (file === undefined) continue;
    if (line === "-----BEGIN CERTIFICATE-----") block = [line];
    else if (block) {
      block.push(line);
      if (line === "-----END CERTIFICATE-----") {
        const at = index++;
        try {
          const x = new X509Certificate(block.join("\n"));
          certs.push({
            path: file,
            index: at,
            subject: commonName(x.subject),
            issuer: commonName(x.issuer),
            notBefore: x509Time(x.validFrom),
            notAfter: x509Time(x.validTo),
            ca: x.ca,
            fingerprint256: x.fingerprint256,
          });
        } catch (e) {
          problems.push(`${file}: certificate ${at + 1} does not parse (${(e as Error).message})`);
        }
        block = undefined;
      }
    }
  }
  if (block) problems.push(`${file}: a certificate without its END line`);
  return { certs, dirs, missingDirs, problems };
}

/** One certificate seen in several files (a CA copied into every chain) is one certificate. */
export interface DistinctCert extends CertRecord {
  /** The other files holding the same certificate. */
  readonly alsoIn: readonly string[];
}

/** The listing's certificates, each once: where it is the file's own (index 0) when it is anywhere. */
export function distinctCerts(certs: readonly CertRecord[]): DistinctCert[] {
  const byPrint = new Map<string, CertRecord[]>();
  for (const c of certs) byPrint.set(c.fingerprint256, [...(byPrint.get(c.fingerprint256) ?? []), c]);
  const out: DistinctCert[] = [];
  for (const group of byPrint.values()) {
    const main = group.find((c) => c.index === 0) ?? group[0]!;
    out.push({ ...main, alsoIn: [...new Set(group.filter((c) => c !== main).map((c) => c.path))].filter((p) => p !== main.path) });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path) || a.index - b.index);
}

/** K3s's renewal window for a version: 120 days from the May 2025 releases on, 90 before. */
export function k3sRenewalDays(version: string): 90 | 120 {
  const m = /^v(\d+)\.(\d+)\.(\d+)\+k3s\d+$/.exec(version);
  if (!m) throw new FmcError("CERTS_VERSION", `not a K3s version: ${JSON.stringify(version)}`);
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (major !== 1) return major > 1 ? 120 : 90;
  // the first release of each line with CertificateRenewDays = 120 (docs.k3s.io/cli/certificate)
  const first: Record<number, number> = { 30: 13, 31: 9, 32: 5, 33: 1 };
  if (minor > 33) return 120;
  const p = first[minor];
  return p !== undefined && patch >= p ? 120 : 90;
}

export type CertStatus = "expired" | "not-yet-valid" | "renew" | "ok";

export interface CertCheck extends DistinctCert {
  readonly status: CertStatus;
  /** Whole days until notAfter (negative once expired). */
  readonly daysLeft: number;
  /** A K3s restart renews it (leaf certificates); CAs need `k3s certificate rotate-ca`. */
  readonly renewedOnRestart: boolean;
}

const DAY_MS = 86_400_000;

/** K3s's verdict on one certificate at `now` with a window of `windowDays`. */
export function classifyCert(c: DistinctCert, now: Date, windowDays: number): CertCheck {
  if (!Number.isInteger(windowDays) || windowDays < 0 || windowDays > 3650) throw new FmcError("USAGE", `warning window ${windowDays}: whole days from 0 to 3650 please`);
  const after = Date.parse(c.notAfter);
  const before = Date.parse(c.notBefore);
  const t = now.getTime();
  const status: CertStatus = t < before ? "not-yet-valid" : t > after ? "expired" : after < t + windowDays * DAY_MS ? "renew" : "ok";
  return { ...c, status, daysLeft: Math.floor((after - t) / DAY_MS), renewedOnRestart: !c.ca };
}

// ---------------------------------------------------------------------------------------------
// fmc certs rotate: new keys and certificates for every node, in a safe order
//
// `k3s certificate rotate` backs up and deletes a node's client and serving certificates (never
// the CAs) and K3s makes new ones, with new keys, when it starts; K3s must be stopped while it
// runs ("systemctl stop k3s; k3s certificate rotate; systemctl start k3s", docs.k3s.io/cli/
// certificate). On a server it rotates the server's and its embedded agent's certificates
// ("Server detected, rotating agent and server certificates"), on an agent the agent's own
// ("Agent detected, rotating agent certificates"; k3s-io/k3s pkg/cli/cert/cert.go rotate). The
// order is K3s's maintainers' word: "If you use the rotate command, you need to rotate on all the
// nodes - servers first, then agents" (k3s-io/k3s discussion #10024); an agent asks a server for
// its new certificates when it starts, so the servers come first. Servers go one at a time, each
// only while etcd keeps quorum without it (read again right before) and each healthy again
// before the next; an agent's pods keep running while its K3s is stopped (KillMode=process).
// Rotating on agents works from the 2024-04 K3s releases on (k3s-io/k3s#9785): before them it
// fails, K3s on that agent is started again as it was, and the run stops there.

/** The words K3s ends a rotation with (cert.go: "Successfully backed up certificates to <dir>, please restart …"). */
const ROTATED = "Successfully backed up certificates to ";

/**
 * `k3s certificate rotate` on a node whose `unit` is stopped. K3s backs the certificates up
 * and deletes them; a run that fails (a non-zero exit, or an exit 0 without K3s's closing
 * line: nothing says what it removed) must not leave the node stopped without them. So fmc
 * saves them first (server/tls whole, the agent directory's own files; on the node, 0700),
 * and on any failure puts them back as they were and starts `unit` again; the saved copy
 * goes once K3s said it rotated. K3s logs on stderr; its lines are passed on there.
 */
export function certRotateCommand(unit: string, dataDir: string = K3S_DATA_DIR): Command {
  const rotate = k3sCli("certificate", "rotate");
  const u = quote(unit);
  const body = [
    "set -u",
    `data=${quote(checkPath(dataDir))}`,
    'keep="$data/fmc-certs-before-rotate"',
    // put everything back as it was saved, and start K3s with it
    "restore() {",
    '  if [ -d "$keep/server-tls" ]; then rm -rf "$data/server/tls" && cp -a "$keep/server-tls" "$data/server/tls"; fi',
    '  if [ -d "$keep/agent" ]; then cp -a "$keep/agent/." "$data/agent/"; fi',
    "}",
    "save() {",
    '  [ -d "$data" ] || return 0',
    '  rm -rf "$keep" && mkdir -m 700 "$keep" || return 1',
    '  if [ -d "$data/server/tls" ]; then cp -a "$data/server/tls" "$keep/server-tls" || return 1; fi',
    '  if [ -d "$data/agent" ]; then mkdir "$keep/agent" && find "$data/agent" -maxdepth 1 -type f -exec cp -a {} "$keep/agent/" \\; || return 1; fi',
    "}",
    `if ! save; then echo ${quote(`fmc could not save the certificates before rotating them: nothing was rotated, ${unit} is started again`)} >&2; rm -rf "$keep"; systemctl start ${u}; exit 1; fi`,
    `out=$(bash -c ${quote(rotate.shell)} 2>&1); rc=$?`,
    'if [ -n "$out" ]; then printf \'%s\\n\' "$out" >&2; fi',
    `if [ "$rc" -ne 0 ] || ! printf '%s\\n' "$out" | grep -qF ${quote(ROTATED)}; then`,
    `  if [ "$rc" -ne 0 ]; then why="failed (exit $rc)"; else why="exited 0 without saying it backed up and removed the certificates"; fi`,
    `  if restore; then rm -rf "$keep"; echo "k3s certificate rotate $why: the certificates are put back as they were and ${unit} is started again" >&2`,
    `  else echo "k3s certificate rotate $why, and putting the certificates back failed: they are in $keep; ${unit} is started again" >&2; fi`,
    `  systemctl start ${u}`,
    "  exit 1",
    "fi",
    'rm -rf "$keep"',
  ].join("\n");
  return slow(script(body, `${rotate.display} (K3s is stopped; its certificates are saved first: if the rotation fails, they are put back and ${unit} is started again)`), SERVER_READY_S);
}

/** K3s's last line of a rotation (cert.go: "Successfully backed up certificates to <dir>, please restart …"). */
export function rotateVerdict(r: ExecResult): string | undefined {
  return new RegExp(`${ROTATED}\\S+`).test(`${r.stdout}\n${r.stderr}`) ? undefined : "k3s certificate rotate did not say it backed up and removed the certificates";
}

export interface RotateRunbook {
  readonly heading: string;
  readonly steps: readonly RunbookStep[];
}

/**
 * The rotation as a runbook: per server a quorum re-read, stop, rotate, start and a wait until
 * its API, etcd member and node answer; then per agent stop, rotate, start and a wait (asked
 * on `via`) until its node is Ready. With etcd's view, a server whose stop would lose quorum
 * refuses the whole run before anything happens.
 */
export function certsRotateRunbook(ctx: ClusterContext, cluster: EtcdClusterView | undefined, o: { via?: string; wait?: WaitOptions; access?: EtcdAccess } = {}): RotateRunbook {
  const servers = ctx.topo.servers;
  const agents = ctx.topo.agents;
  if (servers.length === 0) throw new FmcError("NO_SERVERS", "the spec has no k3s-server hosts");
  const via = o.via ?? servers[0]!.name;
  const steps: RunbookStep[] = [];
  for (const s of servers) {
    if (cluster) {
      const v = quorumCheck(cluster.members, cluster.healthy, { kind: "stop", member: s.name });
      if (!v.ok) throw new FmcError("QUORUM", `rotating ${s.name}'s certificates stops it: ${v.text}`, "fmc etcd status; bring the unhealthy member back first");
    }
    steps.push(
      quorumStep(s.name, { kind: "stop", member: s.name }, `stop ${s.name}`, o.access),
      { title: `stop K3s on ${s.name}`, on: s.name, command: unitCommand("stop", SERVER_UNIT) },
      { title: `rotate ${s.name}'s certificates (k3s certificate rotate: server and its agent)`, on: s.name, command: certRotateCommand(SERVER_UNIT), verify: rotateVerdict },
      { title: `start K3s on ${s.name}: it makes new certificates and keys`, on: s.name, command: unitCommand("start", SERVER_UNIT) },
      serverWaitStep(s.name, undefined, o.wait, o.access),
    );
  }
  for (const a of agents) {
    steps.push(
      { title: `stop the K3s agent on ${a.name}`, on: a.name, command: unitCommand("stop", AGENT_UNIT) },
      { title: `rotate ${a.name}'s certificates (k3s certificate rotate: agent)`, on: a.name, command: certRotateCommand(AGENT_UNIT), verify: rotateVerdict },
      { title: `start the K3s agent on ${a.name}: it fetches new certificates from a server`, on: a.name, command: unitCommand("start", AGENT_UNIT) },
      nodeReadyStep(via, a.name, undefined, o.wait),
    );
  }
  const heading =
    `Rotate the K3s client and server certificates (new keys; the CAs stay): ${servers.length} server(s) one at a time, each healthy again before the next` +
    (agents.length ? `, then ${agents.length} agent(s) one at a time` : "") +
    "; it stops at the first failure";
  return { heading, steps };
}

/** What follows a rotation for people: the admin kubeconfig they copied holds the old client certificate. */
export const rotatedNote =
  "The certificates are new. A copy of the admin kubeconfig made before holds the old client certificate, valid until it expires (the CA is the same): fmc kubeconfig writes a fresh one.\n";
