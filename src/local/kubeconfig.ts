// fmc kubeconfig, everything but the connection: the command that reads K3s's admin
// kubeconfig on a server, its rewrite (our names, the API VIP, the cluster CA kept,
// never insecure-skip-tls-verify), the merge into a kubeconfig the way kubectl merges its
// own entries, which file kubectl would write, and a writer that replaces that file
// atomically under kubectl's own lock, 0600 or narrower. Nothing here prints.
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, fchmodSync, fchownSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync, type Stats } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { Document, isMap, isScalar, isSeq, parseDocument, stringify, visit, YAMLMap, YAMLSeq, type Node } from "yaml";
import { FmcError } from "../errors.js";
import { script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import { pathProblem } from "../model/formats.js";

/**
 * Where K3s writes the admin kubeconfig when it runs as root: k3s-io/k3s
 * pkg/datadir/datadir.go `GlobalConfig` (commit 046a8178189547b74bb226cad454369a8ff2771e),
 * chosen by `HomeKubeConfig(write=true, …)` for uid 0 in pkg/server/server.go `writeKubeConfig`
 * (commit 25c0b5fb9bb369842d8300e7afe9456eda50c912), which writes it with the server URL
 * https://127.0.0.1:6443 and mode 0600 unless --write-kubeconfig-mode says otherwise
 * (fmc renders "0600"). `write-kubeconfig` in k3s.serverArgs moves it.
 */
export const K3S_ADMIN_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml";

/** The exit code of adminKubeconfigCommand when the file is not there (K3s not installed or not started yet). */
export const KUBECONFIG_ABSENT_EXIT = 66;

/** Prints the admin kubeconfig (a secret: it holds the admin's client key) to stdout. */
export function adminKubeconfigCommand(path: string = K3S_ADMIN_KUBECONFIG): Command {
  const why = pathProblem(path);
  if (why) throw new FmcError("KUBECONFIG_PATH", `the admin kubeconfig path ${JSON.stringify(path)}: ${why}`, "k3s.serverArgs.write-kubeconfig must be an absolute, normalised path");
  const p = quote(path);
  return script(
    `if [ -f ${p} ]; then exec cat -- ${p}; fi\necho ${quote(`${path}: no such file (K3s not installed or not started yet)`)} >&2\nexit ${KUBECONFIG_ABSENT_EXIT}`,
    `cat ${path}`,
  );
}

// ---- names and the server URL

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface KubeconfigNames {
  readonly cluster: string;
  readonly user: string;
  readonly context: string;
}

/** Our entries' names: the cluster and the context are the spec's cluster name, the user <name>-admin. */
function kubeconfigNames(clusterName: string): KubeconfigNames {
  if (!DNS_LABEL.test(clusterName)) {
    throw new FmcError("KUBECONFIG_NAME", `cluster name ${JSON.stringify(clusterName.slice(0, 80))} is not a lowercase DNS label`, "the spec's name must be a-z, 0-9 and - inside, at most 63 characters");
  }
  return { cluster: clusterName, user: `${clusterName}-admin`, context: clusterName };
}

const IPV4 = /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** https://<API VIP>:<port>, the address HAProxy's k8s-api frontend listens on (K3s's certificate names the VIP in tls-san). */
export function apiServerUrl(vipAddress: string, port: number): string {
  if (!IPV4.test(vipAddress)) throw new FmcError("KUBECONFIG_SERVER", `API VIP ${JSON.stringify(vipAddress)} is not an IPv4 address`, "k3s.apiVip names the VIP whose address kubectl connects to");
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new FmcError("KUBECONFIG_SERVER", `API port ${port} is not a TCP port`, "loadBalancer.apiPort is the port HAProxy serves the API on");
  return `https://${vipAddress}:${port}`;
}

function checkServer(server: string): void {
  const m = /^https:\/\/([a-z0-9.-]{1,253}|\d{1,3}(\.\d{1,3}){3}):(\d{1,5})$/.exec(server);
  if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) {
    throw new FmcError("KUBECONFIG_SERVER", `server ${JSON.stringify(server.slice(0, 120))} is not https://HOST:PORT`, "the API is reached over TLS at the API VIP");
  }
}

// ---- the rewrite

export interface AdminKubeconfig {
  readonly names: KubeconfigNames;
  readonly server: string;
  /** The cluster entry: server, certificate-authority-data (and tls-server-name, if K3s's file had one). */
  readonly cluster: Readonly<Record<string, string>>;
  /** The user entry: client-certificate-data and client-key-data (or a token). A secret. */
  readonly user: Readonly<Record<string, string>>;
  /** A whole kubeconfig holding only these entries, current-context ours. A secret: write it 0600. */
  readonly text: string;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function pemData(value: unknown, marker: RegExp): string | undefined {
  if (typeof value !== "string" || value.length % 4 !== 0 || !BASE64.test(value)) return undefined;
  return marker.test(Buffer.from(value, "base64").toString("latin1")) ? value : undefined;
}

function format(why: string): never {
  throw new FmcError("KUBECONFIG_FORMAT", `the server's admin kubeconfig ${why}`, `is ${K3S_ADMIN_KUBECONFIG} the file K3s wrote? Compare it with the shape in k3s-io/k3s pkg/clientaccess/kubeconfig.go`);
}

type Entry = { name?: unknown } & Record<string, unknown>;

/** A value from the server's file, as a message may show it: quoted, short, no control characters. */
const shown = (v: unknown) => JSON.stringify(String(v).slice(0, 80));

function named(list: unknown, section: string, name: string): Record<string, unknown> {
  if (!Array.isArray(list)) format(`has no ${section} list`);
  const found = (list as Entry[]).filter((e) => e !== null && typeof e === "object" && e.name === name);
  if (found.length !== 1) format(found.length ? `names ${section} entry ${shown(name)} twice` : `has no ${section} entry named ${shown(name)}`);
  const body = found[0]![section.replace(/s$/, "")];
  if (body === null || typeof body !== "object" || Array.isArray(body)) format(`has an empty ${section} entry ${shown(name)}`);
  return body as Record<string, unknown>;
}

/**
 * K3s's admin kubeconfig as ours: the entries its current-context names (K3s: all three
 * "default", k3s-io/k3s pkg/clientaccess/kubeconfig.go `WriteClientKubeConfig`, commit
 * 48355dce10be2daf0149457756385904422d248c) renamed after the cluster, the server the API
 * VIP, the cluster CA kept.
 * Refuses a file that skips TLS verification or carries no CA to verify with: a
 * kubeconfig that trusts any certificate is never written.
 */
export function rewriteKubeconfig(text: string, o: { clusterName: string; server: string }): AdminKubeconfig {
  const names = kubeconfigNames(o.clusterName);
  checkServer(o.server);
  // read the way kubectl reads it: YAML 1.1, where yes/on are true
  const doc = parseDocument(text, { version: "1.1", prettyErrors: false });
  if (doc.errors.length) format(`is not YAML: ${doc.errors[0]!.message.split("\n")[0]}`);
  const cfg: unknown = doc.toJS();
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) format("is not a kubeconfig (no mapping at the top)");
  const c = cfg as Record<string, unknown>;
  if (c.kind !== undefined && c.kind !== "Config") format(`is of kind ${shown(c.kind)}, not Config`);
  const contexts = Array.isArray(c.contexts) ? (c.contexts as Entry[]) : [];
  const current = typeof c["current-context"] === "string" && c["current-context"] !== "" ? c["current-context"] : contexts.length === 1 ? contexts[0]?.name : undefined;
  if (typeof current !== "string") format(`has ${contexts.length} contexts and no current-context to choose one`);
  const context = named(c.contexts, "contexts", current);
  if (typeof context.cluster !== "string" || typeof context.user !== "string") format(`has a context ${shown(current)} without a cluster and a user`);
  const cluster = named(c.clusters, "clusters", context.cluster);
  const user = named(c.users, "users", context.user);

  const skip = cluster["insecure-skip-tls-verify"];
  if (skip !== undefined && skip !== false) {
    throw new FmcError("KUBECONFIG_INSECURE", `the server's admin kubeconfig sets insecure-skip-tls-verify: ${shown(skip)} for cluster ${shown(context.cluster)}: refusing a kubeconfig that trusts any certificate`, "K3s never writes that; fmc keeps the cluster CA so kubectl verifies the API's certificate");
  }
  const ca = pemData(cluster["certificate-authority-data"], /-----BEGIN CERTIFICATE-----/);
  if (!ca) {
    throw new FmcError(
      "KUBECONFIG_NO_CA",
      `the server's admin kubeconfig has no usable certificate-authority-data for cluster ${shown(context.cluster)}${cluster["certificate-authority"] !== undefined ? " (only a certificate-authority path on the server)" : ""}: refusing a kubeconfig that cannot verify the API`,
      "K3s writes its server CA as certificate-authority-data; fetch the file K3s wrote",
    );
  }
  const newCluster: Record<string, string> = { "certificate-authority-data": ca, server: o.server };
  const sni = cluster["tls-server-name"];
  if (typeof sni === "string" && /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(sni)) newCluster["tls-server-name"] = sni;

  const cert = pemData(user["client-certificate-data"], /-----BEGIN CERTIFICATE-----/);
  const key = pemData(user["client-key-data"], /-----BEGIN [A-Z ]*PRIVATE KEY-----/);
  const newUser: Record<string, string> = {};
  if (cert && key) {
    newUser["client-certificate-data"] = cert;
    newUser["client-key-data"] = key;
  } else if (typeof user.token === "string" && /^[\x21-\x7e]{1,4096}$/.test(user.token)) {
    newUser.token = user.token;
  } else {
    format(`has no client certificate and key (client-certificate-data, client-key-data) for user ${shown(context.user)}`);
  }
  const out = new Document({
    apiVersion: "v1",
    clusters: [{ cluster: newCluster, name: names.cluster }],
    contexts: [{ context: { cluster: names.cluster, user: names.user }, name: names.context }],
    "current-context": names.context,
    kind: "Config",
    preferences: {},
    users: [{ name: names.user, user: newUser }],
  });
  quoteAmbiguous(out.contents!);
  return { names, server: o.server, cluster: newCluster, user: newUser, text: out.toString(STRINGIFY) };
}

// ---- the merge

/** kubectl's own layout: sequences not indented, no folding of long base64 lines. */
const STRINGIFY = { lineWidth: 0, indentSeq: false } as const;

/**
 * Double-quotes every string a YAML 1.1 or 1.2 reader would take for something else
 * (yes, on, null, 0755 …): kubectl reads YAML 1.1, the yaml package writes 1.2.
 */
function quoteAmbiguous(node: Node): void {
  visit(node, {
    Scalar(_, s) {
      if (typeof s.value !== "string") return;
      const v = s.value;
      if (stringify(v, { version: "1.1", lineWidth: 0 }) !== `${v}\n` || stringify(v, { lineWidth: 0 }) !== `${v}\n`) s.type = "QUOTE_DOUBLE";
    },
  });
}

const SECTIONS = [
  ["clusters", "cluster"],
  ["users", "user"],
  ["contexts", "context"],
] as const;

export interface MergeResult {
  /** The whole merged kubeconfig. A secret: write it 0600. */
  readonly text: string;
  /** Our entries that were not there before, as section/name. */
  readonly added: readonly string[];
  /** Our entries that replaced one of the same name. */
  readonly replaced: readonly string[];
  /** current-context afterwards (undefined: none). */
  readonly currentContext: string | undefined;
}

function merging(file: string | undefined, why: string): never {
  throw new FmcError("KUBECONFIG_MERGE", `${file ?? "the kubeconfig"} ${why}: nothing was changed`, "fix or move the file, or merge into another one with --output FILE");
}

/** A plain scalar YAML reads as null (under the failsafe schema every scalar is a string). */
const nullish = (n: unknown) => n === undefined || n === null || (isScalar(n) && (n.value === null || (n.type === "PLAIN" && /^(|~|null|Null|NULL)$/.test(String(n.value)))));

/**
 * Our three entries merged into an existing kubeconfig the way kubectl writes its own:
 * an entry of the same name is replaced where it stands (later duplicates of it, which
 * make kubectl refuse the whole file, are dropped), new ones are appended, everything else is kept as written
 * (read with YAML's failsafe schema so no scalar is re-typed: 0755 stays 0755, comments
 * stay). current-context becomes ours when asked to, or when there was none.
 */
export function mergeKubeconfig(existing: string | undefined, incoming: AdminKubeconfig, o: { setCurrent?: boolean; file?: string } = {}): MergeResult {
  const doc = parseDocument(existing ?? "", { schema: "failsafe", prettyErrors: false, keepSourceTokens: false });
  if (doc.errors.length) merging(o.file, `is not YAML kubectl can read (${doc.errors[0]!.message.split("\n")[0]})`);
  if (nullish(doc.contents)) {
    doc.contents = doc.createNode({ apiVersion: "v1", clusters: [], contexts: [], "current-context": "", kind: "Config", preferences: {}, users: [] }) as unknown as typeof doc.contents;
  }
  if (!isMap(doc.contents)) merging(o.file, "is not a kubeconfig (no mapping at the top)");
  const top = doc.contents as unknown as YAMLMap<unknown, unknown>;
  const kind = top.get("kind");
  if (kind !== undefined && kind !== "Config") merging(o.file, `is of kind ${JSON.stringify(String(kind).slice(0, 80))}, not Config`);

  const added: string[] = [];
  const replaced: string[] = [];
  const ours: Record<string, { name: string; body: Record<string, string> }> = {
    clusters: { name: incoming.names.cluster, body: incoming.cluster },
    users: { name: incoming.names.user, body: incoming.user },
    contexts: { name: incoming.names.context, body: { cluster: incoming.names.cluster, user: incoming.names.user } },
  };
  for (const [section, field] of SECTIONS) {
    const entry = ours[section]!;
    const node = doc.createNode(field === "user" ? { name: entry.name, [field]: entry.body } : { [field]: entry.body, name: entry.name });
    quoteAmbiguous(node);
    let seq: unknown = top.get(section, true);
    if (nullish(seq)) {
      seq = new YAMLSeq();
      top.set(section, seq);
    }
    if (!isSeq(seq)) merging(o.file, `has a ${section} that is not a list`);
    const at = seq.items.flatMap((item, i) => (isMap(item) && String((item as YAMLMap).get("name")) === entry.name ? [i] : []));
    if (at.length) {
      seq.items[at[0]!] = node;
      for (const i of at.slice(1).reverse()) seq.items.splice(i, 1);
      replaced.push(`${field} ${entry.name}`);
    } else {
      // a flow list such as `clusters: []` becomes a block list once it holds an entry
      seq.flow = false;
      seq.items.push(node);
      added.push(`${field} ${entry.name}`);
    }
  }
  const cur = top.get("current-context", true);
  let currentContext = nullish(cur) ? undefined : String((cur as { value?: unknown }).value ?? "");
  if (o.setCurrent || currentContext === undefined || currentContext === "") {
    const s = doc.createNode(incoming.names.context);
    quoteAmbiguous(s);
    top.set("current-context", s);
    currentContext = incoming.names.context;
  }
  return { text: doc.toString(STRINGIFY), added, replaced, currentContext };
}

// ---- which file

/**
 * The file `kubectl config` writes new entries to: --kubeconfig (here --output) if given;
 * else, of $KUBECONFIG's colon-separated paths (duplicates once), the only one, or the
 * first that exists, or if none does the LAST one; else ~/.kube/config. client-go
 * tools/clientcmd/config.go `PathOptions.GetDefaultFilename` (measured with kubectl
 * v1.32: KUBECONFIG=a:b with neither there writes b). Unlike kubectl, empty paths
 * (a::b, a:) are skipped rather than tried as "".
 */
export function kubeconfigTarget(o: { output?: string; env: { KUBECONFIG?: string }; home: string; exists?: (p: string) => boolean }): string {
  if (o.output) return resolve(o.output);
  const exists = o.exists ?? existsSync;
  const paths = [...new Set((o.env.KUBECONFIG ?? "").split(":").filter((p) => p !== "").map((p) => resolve(p)))];
  if (paths.length === 0) return join(o.home, ".kube", "config");
  return paths.find((p) => exists(p)) ?? paths[paths.length - 1]!;
}

// ---- the writer

export interface WriteResult {
  /** The file written (a symlink's target). */
  readonly path: string;
  readonly created: boolean;
  readonly mode: number;
  /** The mode before, when it was wider than 0600 and had to be narrowed for a secret. */
  readonly narrowedFrom?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** kubectl's lock: <file>.lock created exclusively, a few tries 100 ms apart (client-go tools/clientcmd/loader.go lockFile). */
async function lock(file: string, tries: number): Promise<string> {
  const name = `${file}.lock`;
  for (let i = 0; ; i++) {
    try {
      closeSync(openSync(name, "wx", 0o600));
      return name;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      if (i + 1 >= tries) throw new FmcError("KUBECONFIG_LOCKED", `${name} exists: kubectl or another fmc is changing ${file}; nothing was changed`, `if nothing is, remove ${name} and run again`);
      await sleep(100);
    }
  }
}

/**
 * Reads the kubeconfig at `file` (if any), computes the new text with `update`, and
 * replaces the file atomically: a temp file in the same directory, written 0600 (or the
 * file's own mode if narrower: a mode is never widened), fsynced, renamed over it.
 * A symlink is followed (its target is replaced, the link stays). A missing directory is
 * created 0700. kubectl's lock file is held throughout, so neither overwrites the other.
 */
export async function writeKubeconfigFile(file: string, update: (existing: string | undefined) => string, o: { lockTries?: number } = {}): Promise<WriteResult> {
  const dir = dirname(file);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const held = await lock(file, o.lockTries ?? 5);
  try {
    let target = file;
    let link: Stats | undefined;
    try {
      link = lstatSync(file);
    } catch {
      link = undefined;
    }
    if (link?.isSymbolicLink()) {
      try {
        target = realpathSync(file);
      } catch {
        throw new FmcError("KUBECONFIG_MERGE", `${file} is a symlink to a file that does not exist: nothing was changed`, "point it at a file, or remove it");
      }
    }
    const before = link ? statSync(target) : undefined;
    if (before && !before.isFile()) throw new FmcError("KUBECONFIG_MERGE", `${target} is not a regular file: nothing was changed`);
    const existing = before ? readFileSync(target, "utf8") : undefined;
    const text = update(existing);
    const old = before ? before.mode & 0o777 : undefined;
    const mode = old === undefined ? 0o600 : old & 0o600;
    const tmp = join(dirname(target), `.${basename(target)}.fmc-${process.pid}-${randomBytes(4).toString("hex")}`);
    const fd = openSync(tmp, "wx", mode);
    try {
      try {
        fchmodSync(fd, mode);
        // root writing someone's file (sudo) leaves it theirs
        if (before && process.getuid?.() === 0 && (before.uid !== 0 || before.gid !== 0)) fchownSync(fd, before.uid, before.gid);
        writeFileSync(fd, text);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, target);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    try {
      const d = openSync(dirname(target), "r");
      try {
        fsyncSync(d);
      } finally {
        closeSync(d);
      }
    } catch {
      // a directory that can't be fsynced (some filesystems) still has the rename
    }
    return { path: target, created: !before, mode, narrowedFrom: old !== undefined && (old & ~0o600) !== 0 ? old : undefined };
  } finally {
    rmSync(held, { force: true });
  }
}
