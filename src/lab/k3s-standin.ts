// The lab's stand-in for K3s: K3s can't run on the lab machine, so the lab ships a small
// `k3s` of its own in a bundle (.fmc/lab/k3s-bundle) that `fmc apply` installs exactly as it
// installs a real release (uploaded, SHA-256 checked on the node, fmc's k3s.service or
// k3s-agent.service). On servers it runs Debian's etcd (this machine's /usr/bin/etcd, copied
// in by the lab) laid out as K3s lays out its embedded etcd: the same ports (client 2379 on
// 127.0.0.1 and the node address, peer 2380), TLS files at K3s's paths with K3s's names, the
// data under /var/lib/rancher/k3s/server/db/etcd, members named <node>-<8 hex>. So fmc's
// install order, its waits, etcd reading (src/k3s/etcd.ts) and every quorum decision run
// against a real multi-member etcd; agents check their bootstrap token against it.
// Certificates come from a CA of the lab's own (.fmc/lab/etcd, keys 0600).
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { FmcError } from "../errors.js";
import { buildBundle } from "../local/bundle-build.js";
import { BIN, CTL, HOST_ETCD, HOST_ETCDCTL, K3S_ETCD_DATA, K3S_ETCD_TLS, k3sStandIn, LIB } from "./k3s-standin-script.js";

export { HOST_ETCD, STANDIN_UNIT } from "./k3s-standin-script.js";

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
      source: "fmc lab up: the lab's stand-in for K3s (src/lab/k3s-standin.ts), not a K3s release",
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
const memberName = (lab: string, node: string): string => `${node}-${createHash("sha256").update(`${lab}/${node}`).digest("hex").slice(0, 8)}`;

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
function standInKubeconfig(certDir: string): string {
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
      const mode = n.endsWith(".key") ? 0o600 : 0o644;
      // at K3s's path, and the stand-in's own copy it starts from when that is gone
      files.push({ path: `${K3S_ETCD_TLS}/${n}`, content: read(dir, n), mode }, { path: `${LIB}/tls-etcd/${n}`, content: read(dir, n), mode });
    }
    // K3s writes the admin kubeconfig at start (0600 with write-kubeconfig-mode): the lab's
    // has the same shape and names, signed by the lab's CA (no API answers behind it)
    files.push({ path: "/etc/rancher/k3s/k3s.yaml", content: standInKubeconfig(dir), mode: 0o600 }, { path: `${LIB}/k3s.yaml`, content: standInKubeconfig(dir), mode: 0o600 });
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
