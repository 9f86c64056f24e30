// The lab's stand-in for K3s's embedded etcd: K3s can't run on the lab machine, so each
// k3s-server container runs Debian's etcd (this machine's /usr/bin/etcd, copied in) laid
// out the way K3s lays out its embedded etcd: the same ports (client 2379 on 127.0.0.1 and
// the node address, peer 2380), TLS files at K3s's paths with K3s's names, the data under
// /var/lib/rancher/k3s/server/db/etcd, members named <node>-<8 hex>, and a unit named
// k3s.service. So fmc's etcd reading (src/ops/etcd.ts: curl with K3s's client certificate)
// and every quorum decision run against a real multi-member etcd. Started by the lab, never
// by fmc apply; certificates come from a CA of the lab's own (.fmc/lab/etcd, keys 0600).
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { FmcError } from "../errors.js";
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

/**
 * The lab's stand-in for the k3s CLI: only `k3s etcd-snapshot save [--name N] [--dir D]`,
 * writing where K3s writes and naming the file as K3s names it (<name>-<node>-<unix time>,
 * docs.k3s.io/cli/etcd-snapshot), through etcdctl with K3s's etcd client certificate.
 */
export const K3S_CLI_STANDIN = `#!/bin/sh
# fmc lab stand-in for the k3s CLI (K3s can't run on the lab machine): only
# "k3s etcd-snapshot save [--name N] [--dir D]", as K3s names and places snapshots.
set -eu
if [ "\${1:-}" != etcd-snapshot ] || [ "\${2:-}" != save ]; then
  echo "fmc lab stand-in: k3s $* is not available in the lab (K3s can't run here)" >&2
  exit 1
fi
shift 2
name=on-demand
dir=${K3S_SNAPSHOT_DIR}
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --name=*) name=\${1#--name=}; shift ;;
    --dir|--etcd-snapshot-dir) dir=$2; shift 2 ;;
    *) echo "fmc lab stand-in: k3s etcd-snapshot save: unknown flag $1" >&2; exit 1 ;;
  esac
done
mkdir -p -m 0700 "$dir"
file="$dir/$name-$(hostname)-$(date +%s)"
tls=${K3S_ETCD_TLS}
ETCDCTL_API=3 ${CTL} --endpoints=https://127.0.0.1:2379 --cacert="$tls/server-ca.crt" --cert="$tls/client.crt" --key="$tls/client.key" snapshot save "$file" >/dev/null
echo "Snapshot $(basename "$file") saved to $file"
`;

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

/** etcd's command line for one member, as K3s configures its embedded etcd. */
export function etcdArgs(lab: string, node: EtcdNode, all: readonly EtcdNode[]): string[] {
  const tls = (n: string) => `${K3S_ETCD_TLS}/${n}`;
  return [
    `--name=${memberName(lab, node.name)}`,
    `--data-dir=${K3S_ETCD_DATA}`,
    `--listen-client-urls=https://127.0.0.1:2379,https://${node.address}:2379`,
    `--advertise-client-urls=https://${node.address}:2379`,
    `--listen-peer-urls=https://${node.address}:2380`,
    `--initial-advertise-peer-urls=https://${node.address}:2380`,
    `--initial-cluster=${all.map((n) => `${memberName(lab, n.name)}=https://${n.address}:2380`).join(",")}`,
    "--initial-cluster-state=new",
    `--initial-cluster-token=fmclab-${lab}`,
    "--client-cert-auth",
    `--trusted-ca-file=${tls("server-ca.crt")}`,
    `--cert-file=${tls("server-client.crt")}`,
    `--key-file=${tls("server-client.key")}`,
    "--peer-client-cert-auth",
    `--peer-trusted-ca-file=${tls("peer-ca.crt")}`,
    `--peer-cert-file=${tls("peer-server-client.crt")}`,
    `--peer-key-file=${tls("peer-server-client.key")}`,
  ];
}

/** Puts the stand-in into a container's root: the binary, K3s's TLS files, k3s.service enabled. */
export function installEtcdStandIn(root: string, lab: string, node: EtcdNode, all: readonly EtcdNode[], certDir: string): void {
  mkdirSync(join(root, "usr/local/lib/fmc-lab"), { recursive: true });
  copyFileSync(HOST_ETCD, join(root, BIN));
  chmodSync(join(root, BIN), 0o755);
  const tls = join(root, K3S_ETCD_TLS.slice(1));
  mkdirSync(tls, { recursive: true, mode: 0o700 });
  for (const n of ["server-ca.crt", "peer-ca.crt", "server-client.crt", "server-client.key", "client.crt", "client.key", "peer-server-client.crt", "peer-server-client.key"]) {
    writeFileSync(join(tls, n), readFileSync(join(certDir, n)), { mode: n.endsWith(".key") ? 0o600 : 0o644 });
  }
  mkdirSync(join(root, K3S_ETCD_DATA.slice(1)), { recursive: true, mode: 0o700 });
  if (existsSync(HOST_ETCDCTL)) {
    copyFileSync(HOST_ETCDCTL, join(root, CTL));
    chmodSync(join(root, CTL), 0o755);
    writeFileSync(join(root, "usr/local/bin/k3s"), K3S_CLI_STANDIN, { mode: 0o755 });
  }
  writeFileSync(
    join(root, "etc/systemd/system", STANDIN_UNIT),
    [
      "# fmc lab stand-in: K3s can't run on the lab machine; this is Debian's etcd laid out as",
      "# K3s's embedded etcd (ports, TLS files, data directory, member name, unit name)",
      "[Unit]",
      "Description=fmc lab stand-in for K3s's embedded etcd",
      "After=network-online.target",
      "",
      "[Service]",
      `ExecStart=${BIN} ${etcdArgs(lab, node, all).join(" ")}`,
      "Restart=always",
      "RestartSec=2",
      "",
      "[Install]",
      "WantedBy=multi-user.target",
      "",
    ].join("\n"),
    { mode: 0o644 },
  );
  // K3s writes the admin kubeconfig at start (0600 with write-kubeconfig-mode): the lab's
  // has the same shape and names, signed by the lab's CA (no API answers behind it)
  mkdirSync(join(root, "etc/rancher/k3s"), { recursive: true, mode: 0o755 });
  writeFileSync(join(root, "etc/rancher/k3s/k3s.yaml"), standInKubeconfig(certDir), { mode: 0o600 });
  mkdirSync(join(root, "etc/systemd/system/multi-user.target.wants"), { recursive: true });
  symlinkSync(`/etc/systemd/system/${STANDIN_UNIT}`, join(root, "etc/systemd/system/multi-user.target.wants", STANDIN_UNIT));
}
