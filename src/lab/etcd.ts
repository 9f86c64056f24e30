// The lab's stand-in for K3s: K3s can't run on the lab machine, so the lab ships a small
// `k3s` of its own in a bundle (.fmc/lab/k3s-bundle) that `fmc apply` installs exactly as it
// installs a real release (uploaded, SHA-256 checked on the node, fmc's k3s.service or
// k3s-agent.service). On servers it runs Debian's etcd (this machine's /usr/bin/etcd, copied
// in by the lab) laid out as K3s lays out its embedded etcd: the same ports (client 2379 on
// 127.0.0.1 and the node address, peer 2380), TLS files at K3s's paths with K3s's names, the
// data under /var/lib/rancher/k3s/server/db/etcd, members named <node>-<8 hex>. So fmc's
// install order, its waits, etcd reading (src/ops/etcd.ts) and every quorum decision run
// against a real multi-member etcd; agents check their bootstrap token against it.
// Certificates come from a CA of the lab's own (.fmc/lab/etcd, keys 0600).
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { FmcError } from "../errors.js";
import { buildBundle } from "../ops/bundle-build.js";
import { K3S_SNAPSHOT_DIR } from "../ops/etcd.js";

/** Where this machine's etcd is (Debian's etcd-server); without it the lab runs no stand-in. */
export const HOST_ETCD = "/usr/bin/etcd";
/** K3s's etcd TLS directory (k3s-io/k3s pkg/daemons/control/deps/deps.go). */
export const K3S_ETCD_TLS = "/var/lib/rancher/k3s/server/tls/etcd";
/** K3s's etcd data directory (k3s-io/k3s pkg/etcd/etcd.go, dbDir). */
export const K3S_ETCD_DATA = "/var/lib/rancher/k3s/server/db/etcd";
export const STANDIN_UNIT = "k3s.service";
const BIN = "/usr/local/lib/fmc-lab/etcd";
/** This machine's etcdctl (Debian's etcd-client): the lab's `k3s etcd-snapshot` uses it. */
export const HOST_ETCDCTL = "/usr/bin/etcdctl";
const CTL = "/usr/local/lib/fmc-lab/etcdctl";

export const LIB = "/usr/local/lib/fmc-lab";

/**
 * The lab's stand-in for the k3s binary, shipped in the lab's K3s bundle and installed by
 * `fmc apply` exactly as a real one is (uploaded, SHA-256 checked, fmc's own unit). What it
 * does in K3s's place, with a real etcd underneath:
 * - `k3s server`: reads /etc/rancher/k3s/config.yaml as K3s does; with cluster-init it
 *   starts a new one-member etcd; with `server:` it joins: K3s asks the server URL for the
 *   members, the stand-in asks the other servers' etcd directly (member add), then starts
 *   a member that syncs; with a data directory it starts the existing member. etcd itself
 *   tells systemd it is ready (Type=notify), as K3s does once it serves.
 * - `k3s agent`: checks the token as K3s's TLS bootstrap does (K10<CA hash>::…: the hash of
 *   the cluster CA must match) and that the bootstrap-token Secret exists in the cluster's
 *   etcd, unexpired, with this secret; then marks itself admitted and idles.
 * - `k3s kubectl get --raw=/readyz` (answers from etcd's health: no API server runs),
 *   `k3s kubectl apply -f -` (stores the object in etcd under /registry/…, as the API
 *   server would), `k3s etcd-snapshot save [--name N] [--dir D]` (K3s's file names), `--version`.
 */
export function k3sStandIn(version: string): string {
  return `#!/bin/sh
# fmc lab stand-in for K3s ${version}: K3s can't run on the lab machine. See src/lab/etcd.ts.
set -eu
VERSION='${version}'
LIB=${LIB}
TLS=${K3S_ETCD_TLS}
DATA=${K3S_ETCD_DATA}
CONFIG=/etc/rancher/k3s/config.yaml
ctl() { ETCDCTL_API=3 "$LIB/etcdctl" --cacert="$TLS/server-ca.crt" --cert="$TLS/client.crt" --key="$TLS/client.key" "$@"; }
# a top-level scalar of config.yaml (what fmc writes: one "key: value" per line)
cfg() { [ -f "$CONFIG" ] && sed -n "s/^$1: *//p" "$CONFIG" | head -n 1 | sed "s/^[\\"']//; s/[\\"']\\$//"; }
die() { echo "k3s (fmc lab stand-in): $*" >&2; exit 1; }
case "\${1:-}" in
--version|-v|version)
  echo "k3s version $VERSION (fmc-lab-stand-in)"
  ;;
server)
  . "$LIB/standin.env"
  [ -f "$CONFIG" ] || die "no $CONFIG"
  mkdir -p /var/lib/rancher/k3s/server/tls
  [ -s /var/lib/rancher/k3s/server/tls/server-ca.crt ] || cp "$LIB/cluster-ca.crt" /var/lib/rancher/k3s/server/tls/server-ca.crt
  set -- --name="$NAME" --data-dir="$DATA" \\
    --listen-client-urls="https://127.0.0.1:2379,https://$ADDRESS:2379" --advertise-client-urls="https://$ADDRESS:2379" \\
    --listen-peer-urls="https://$ADDRESS:2380" --initial-advertise-peer-urls="https://$ADDRESS:2380" \\
    --client-cert-auth --trusted-ca-file="$TLS/server-ca.crt" --cert-file="$TLS/server-client.crt" --key-file="$TLS/server-client.key" \\
    --peer-client-cert-auth --peer-trusted-ca-file="$TLS/peer-ca.crt" --peer-cert-file="$TLS/peer-server-client.crt" --peer-key-file="$TLS/peer-server-client.key"
  if [ -d "$DATA/member" ]; then exec "$LIB/etcd" "$@"; fi
  if [ "$(cfg cluster-init)" = true ]; then
    exec "$LIB/etcd" "$@" --initial-cluster="$NAME=https://$ADDRESS:2380" --initial-cluster-state=new --initial-cluster-token="$CLUSTER_TOKEN"
  fi
  [ -n "$(cfg server)" ] || die "$CONFIG has neither cluster-init nor server: nothing to start or join"
  # K3s keeps trying to join; so does the stand-in (etcd refuses a member add until every
  # member has been connected for 5 s: "not healthy for reconfigure")
  tries=0
  while [ "$tries" -lt 90 ]; do
  tries=$((tries + 1))
  for p in $PEERS; do
    [ "$p" = "$ADDRESS" ] && continue
    if out=$(ctl --endpoints="https://$p:2379" member add "$NAME" --peer-urls="https://$ADDRESS:2380" 2>&1); then
      exec "$LIB/etcd" "$@" --initial-cluster="$(echo "$out" | sed -n 's/^ETCD_INITIAL_CLUSTER="\\(.*\\)"$/\\1/p')" --initial-cluster-state=existing
    fi
    # added by an earlier start that never came up: take the member list as it is
    if list=$(ctl --endpoints="https://$p:2379" member list 2>/dev/null) && echo "$list" | grep -q "https://$ADDRESS:2380"; then
      exec "$LIB/etcd" "$@" --initial-cluster="$(echo "$list" | awk -F', ' -v me="$NAME" '{ n = $3; if (n == "") n = me; printf "%s%s=%s", (c++ ? "," : ""), n, $4 }')" --initial-cluster-state=existing
    fi
  done
  sleep 2
  done
  die "no etcd member among $PEERS let $NAME join in 180 s (is the first server up?)"
  ;;
agent)
  . "$LIB/standin.env"
  token=$(cfg token)
  case "$token" in K10*::*) ;; *) die "the token is not in K3s's secure format (K10<CA hash>::…): not joining without checking the server" ;; esac
  hash=\${token#K10}; hash=\${hash%%::*}; cred=\${token#*::}
  ca=$(sha256sum "$LIB/cluster-ca.crt" | cut -d ' ' -f 1)
  [ "$hash" = "$ca" ] || die "the cluster CA's SHA-256 is $ca, the token pins $hash: not joining"
  id=\${cred%%.*}; secret=\${cred#*.}
  echo "$cred" | grep -Eq '^[a-z0-9]{6}\\.[a-z0-9]{16}$' || die "the credentials are not a bootstrap token"
  key=$(printf '/registry/secrets/kube-system/bootstrap-token-%s' "$id" | base64 -w0)
  body=
  for p in $PEERS; do
    if r=$(curl -sf --max-time 5 --cacert "$LIB/etcd-ca.crt" --cert "$LIB/etcd-client.crt" --key "$LIB/etcd-client.key" -X POST -d "{\\"key\\":\\"$key\\"}" "https://$p:2379/v3/kv/range"); then
      body=$(echo "$r" | sed -n 's/.*"value":"\\([^"]*\\)".*/\\1/p' | base64 -d 2>/dev/null || true); break
    fi
  done
  [ -n "$body" ] || die "bootstrap token $id is not in the cluster (or no server answers)"
  echo "$body" | grep -q "\\"token-secret\\":\\"$secret\\"" || die "bootstrap token $id: wrong secret"
  exp=$(echo "$body" | sed -n 's/.*"expiration":"\\([^"]*\\)".*/\\1/p')
  [ -n "$exp" ] && [ "$(date -d "$exp" +%s)" -gt "$(date +%s)" ] || die "bootstrap token $id expired at $exp"
  mkdir -p /var/lib/rancher/k3s/agent /etc/rancher/node
  [ -s /etc/rancher/node/password ] || (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /etc/rancher/node/password)
  echo "fmc lab stand-in: admitted with bootstrap token $id at $(date -u +%FT%TZ)" > /var/lib/rancher/k3s/agent/client-kubelet.crt
  systemd-notify --ready 2>/dev/null || true
  exec sleep infinity
  ;;
kubectl)
  shift
  case "$*" in
  "get --raw=/readyz") ctl --endpoints=https://127.0.0.1:2379 endpoint health >/dev/null 2>&1 || die "etcd on this server is not healthy"; echo ok ;;
  "apply -f -")
    body=$(cat)
    name=$(echo "$body" | sed -n 's/.*"metadata":{"name":"\\([a-z0-9.-]*\\)","namespace":"\\([a-z0-9-]*\\)".*/\\2\\/\\1/p')
    [ -n "$name" ] || die "kubectl apply: the stand-in takes one JSON object with metadata.name and .namespace"
    printf '%s' "$body" | ctl --endpoints=https://127.0.0.1:2379 put "/registry/secrets/$name" >/dev/null
    echo "secret/\${name#*/} configured"
    ;;
  *) die "kubectl $* is not available in the lab (no API server runs)" ;;
  esac
  ;;
etcd-snapshot)
  [ "\${2:-}" = save ] || die "only etcd-snapshot save"
  shift 2
  name=on-demand
  dir=${K3S_SNAPSHOT_DIR}
  while [ $# -gt 0 ]; do
    case "$1" in
      --name) name=$2; shift 2 ;;
      --name=*) name=\${1#--name=}; shift ;;
      --dir|--etcd-snapshot-dir) dir=$2; shift 2 ;;
      *) die "etcd-snapshot save: unknown flag $1" ;;
    esac
  done
  mkdir -p -m 0700 "$dir"
  file="$dir/$name-$(hostname)-$(date +%s)"
  ctl --endpoints=https://127.0.0.1:2379 snapshot save "$file" >/dev/null
  echo "Snapshot $(basename "$file") saved to $file"
  ;;
*)
  die "k3s $* is not available in the lab (K3s can't run here)"
  ;;
esac
`;
}

/**
 * The lab's K3s bundle: the stand-in as "k3s" with a checksum file over it, assembled by
 * fmc bundle's own builder, so apply reads exactly what `fmc bundle` writes.
 */
export async function writeLabK3sBundle(dir: string, version: string): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  const src = `${dir}.src`;
  rmSync(src, { recursive: true, force: true });
  mkdirSync(src, { recursive: true, mode: 0o700 });
  try {
    const bin = k3sStandIn(version);
    writeFileSync(join(src, "k3s"), bin, { mode: 0o755 });
    writeFileSync(join(src, "sha256sum-amd64.txt"), `${createHash("sha256").update(bin).digest("hex")}  k3s\n`);
    await buildBundle({
      dir,
      version,
      input: { kind: "files", files: { k3s: join(src, "k3s"), "sha256sum-amd64.txt": join(src, "sha256sum-amd64.txt") } },
      source: "fmc lab up: the lab's stand-in for K3s (src/lab/etcd.ts), not a K3s release",
    });
  } finally {
    rmSync(src, { recursive: true, force: true });
  }
}

export interface EtcdNode {
  readonly name: string;
  /** The node's address (no prefix). */
  readonly address: string;
}

export const etcdStandInAvailable = (): boolean => existsSync(HOST_ETCD);

/** K3s names a member <node name>-<8 hex>; the lab derives the suffix from the lab and node, so it is stable. */
export const memberName = (lab: string, node: string): string => `${node}-${createHash("sha256").update(`${lab}/${node}`).digest("hex").slice(0, 8)}`;

function openssl(args: string[], what: string): void {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.status !== 0) throw new FmcError("LAB_ETCD", `${what}: ${(r.stderr || String(r.error ?? "")).trim().split("\n").slice(-2).join(" / ")}`);
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/**
 * The two CAs K3s makes for etcd (server-ca for clients and serving, peer-ca between
 * members) and, per node, the files K3s puts in server/tls/etcd: server-client (etcd's
 * serving certificate, also a client), client (what K3s's own etcd client uses), and
 * peer-server-client. Returns each node's directory of files, named as K3s names them.
 */
export function issueEtcdCertificates(dir: string, lab: string, nodes: readonly EtcdNode[]): Map<string, string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const f = (n: string) => join(dir, n);
  for (const ca of ["server-ca", "peer-ca"]) {
    openssl(["req", "-x509", ...EC, "-keyout", f(`${ca}.key`), "-out", f(`${ca}.crt`), "-days", "30", "-subj", `/CN=etcd-${ca} (fmc lab ${lab})`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], `creating the lab's etcd ${ca}`);
  }
  const out = new Map<string, string>();
  for (const n of nodes) {
    const d = join(dir, n.name);
    mkdirSync(d, { recursive: true, mode: 0o700 });
    const sans = `subjectAltName=DNS:localhost,DNS:${n.name},IP:127.0.0.1,IP:${n.address}`;
    const issue = (file: string, ca: string, usage: string, withSans: boolean) => {
      openssl(["req", ...EC, "-keyout", join(d, `${file}.key`), "-out", join(d, `${file}.csr`), "-subj", `/CN=${file === "client" ? "etcd-client" : n.name}`], `a ${file} request for ${n.name}`);
      writeFileSync(join(d, `${file}.ext`), `${withSans ? `${sans}\n` : ""}basicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\n`);
      openssl(["x509", "-req", "-in", join(d, `${file}.csr`), "-CA", f(`${ca}.crt`), "-CAkey", f(`${ca}.key`), "-CAcreateserial", "-days", "30", "-out", join(d, `${file}.crt`), "-extfile", join(d, `${file}.ext`)], `signing ${n.name}'s ${file}`);
      chmodSync(join(d, `${file}.key`), 0o600);
      for (const x of [`${file}.csr`, `${file}.ext`]) rmSync(join(d, x), { force: true });
    };
    issue("server-client", "server-ca", "serverAuth,clientAuth", true);
    issue("client", "server-ca", "clientAuth", false);
    issue("peer-server-client", "peer-ca", "serverAuth,clientAuth", true);
    copyFileSync(f("server-ca.crt"), join(d, "server-ca.crt"));
    copyFileSync(f("peer-ca.crt"), join(d, "peer-ca.crt"));
    out.set(n.name, d);
  }
  for (const ca of ["server-ca", "peer-ca"]) chmodSync(f(`${ca}.key`), 0o600);
  rmSync(f("server-ca.srl"), { force: true });
  rmSync(f("peer-ca.srl"), { force: true });
  return out;
}

/** An admin kubeconfig shaped as K3s writes /etc/rancher/k3s/k3s.yaml (names "default", 127.0.0.1:6443). */
export function standInKubeconfig(certDir: string): string {
  const b64 = (f: string) => readFileSync(join(certDir, f)).toString("base64");
  return [
    "apiVersion: v1",
    "clusters:",
    "- cluster:",
    `    certificate-authority-data: ${b64("server-ca.crt")}`,
    "    server: https://127.0.0.1:6443",
    "  name: default",
    "contexts:",
    "- context:",
    "    cluster: default",
    "    user: default",
    "  name: default",
    "current-context: default",
    "kind: Config",
    "preferences: {}",
    "users:",
    "- name: default",
    "  user:",
    `    client-certificate-data: ${b64("client.crt")}`,
    `    client-key-data: ${b64("client.key")}`,
    "",
  ].join("\n");
}

/** A file the stand-in needs on a lab host (containers: written into its root; VMs: on the config disk). */
export interface StandInFile {
  readonly path: string;
  readonly content: string;
  readonly mode: number;
}

const NOTIFY_DROPIN = "# fmc lab: the stand-in notifies systemd from a helper process\n[Service]\nNotifyAccess=all\n";

/**
 * What a K3s node of the lab needs for the stand-in, beside what fmc apply installs: a
 * server its etcd TLS files (K3s makes them itself at first start), its member name and
 * peers, the admin kubeconfig K3s would write; every node the cluster CA (the agents' token
 * pins its hash), a client certificate for reading bootstrap tokens from etcd, and a
 * drop-in letting the stand-in report readiness. No unit, no binary: apply installs those.
 */
export function standInFiles(lab: string, node: EtcdNode & { server: boolean }, servers: readonly EtcdNode[], certs: ReadonlyMap<string, string>): StandInFile[] {
  const any = certs.get(servers[0]!.name)!;
  const read = (dir: string, n: string) => readFileSync(join(dir, n), "utf8");
  const files: StandInFile[] = [
    { path: `${LIB}/cluster-ca.crt`, content: read(any, "server-ca.crt"), mode: 0o644 },
    { path: `${LIB}/etcd-ca.crt`, content: read(any, "server-ca.crt"), mode: 0o644 },
    { path: `${LIB}/etcd-client.crt`, content: read(any, "client.crt"), mode: 0o644 },
    { path: `${LIB}/etcd-client.key`, content: read(any, "client.key"), mode: 0o600 },
    {
      path: `${LIB}/standin.env`,
      content: `NAME=${memberName(lab, node.name)}\nADDRESS=${node.address}\nPEERS="${servers.map((s) => s.address).join(" ")}"\nCLUSTER_TOKEN=fmclab-${lab}\n`,
      mode: 0o644,
    },
    { path: `/etc/systemd/system/${node.server ? "k3s.service" : "k3s-agent.service"}.d/fmc-lab.conf`, content: NOTIFY_DROPIN, mode: 0o644 },
  ];
  if (node.server) {
    const dir = certs.get(node.name)!;
    for (const n of ["server-ca.crt", "peer-ca.crt", "server-client.crt", "server-client.key", "client.crt", "client.key", "peer-server-client.crt", "peer-server-client.key"]) {
      files.push({ path: `${K3S_ETCD_TLS}/${n}`, content: read(dir, n), mode: n.endsWith(".key") ? 0o600 : 0o644 });
    }
    // K3s writes the admin kubeconfig at start (0600 with write-kubeconfig-mode): the lab's
    // has the same shape and names, signed by the lab's CA (no API answers behind it)
    files.push({ path: "/etc/rancher/k3s/k3s.yaml", content: standInKubeconfig(dir), mode: 0o600 });
  }
  return files;
}

/** Writes the stand-in's files into a container's root, and on a server the etcd binaries. */
export function installStandIn(root: string, files: readonly StandInFile[], server: boolean): void {
  for (const f of files) {
    const p = join(root, f.path.slice(1));
    mkdirSync(join(p, ".."), { recursive: true, mode: 0o700 });
    writeFileSync(p, f.content, { mode: f.mode });
  }
  if (!server) return;
  copyFileSync(HOST_ETCD, join(root, BIN));
  chmodSync(join(root, BIN), 0o755);
  copyFileSync(HOST_ETCDCTL, join(root, CTL));
  chmodSync(join(root, CTL), 0o755);
  mkdirSync(join(root, K3S_ETCD_DATA.slice(1), ".."), { recursive: true, mode: 0o700 });
}
