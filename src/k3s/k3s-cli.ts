// The k3s binary on a node: its units and their time limits, its versions (K3s's release tags
// and what `k3s --version` prints), the command that installs a version of it (the install
// phases and fmc upgrade share it), and how day-2 commands call it: fmc installs it in
// /opt/bin on Flatcar (its /usr is read-only) and in /usr/local/bin elsewhere (k3sBinDir in
// src/hosts/os.ts), and a non-interactive SSH shell's PATH may have neither, so the command
// finds it itself.
import { FmcError } from "../errors.js";
import { script, uploadScript, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import { k3sInstallScript } from "../render/k3s-install.js";
import { sh } from "../render/quote.js";
import type { ClusterContext } from "../state/context.js";
import { checkBundlePin, type K3sBundle } from "../local/bundle.js";

export const SERVER_UNIT = "k3s.service";
export const AGENT_UNIT = "k3s-agent.service";
/** How long a server may take to answer after a start (a first start pulls nothing, but etcd syncs). */
export const SERVER_READY_S = 600;
export const AGENT_JOIN_S = 300;

const FIND = 'b=/usr/local/bin/k3s; if [ -x /opt/bin/k3s ]; then b=/opt/bin/k3s; fi';

/** `k3s ARGS…` on the node, each argument quoted. */
export function k3sCli(...args: string[]): Command {
  return script(`${FIND}; exec "$b" ${args.map(quote).join(" ")}`, `k3s ${args.map(quote).join(" ")}`);
}

/** `k3s kubectl ARGS…` on a server (K3s's embedded kubectl reads the admin kubeconfig there). */
export const kubectl = (...args: string[]): Command => k3sCli("kubectl", ...args);

export interface K3sVersion {
  readonly text: string;
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** The K3s build of that Kubernetes version: v1.33.4+k3s1 -> 1. */
  readonly build: number;
}

/** v1.33.4+k3s1 (K3s's release tags; the install script's INSTALL_K3S_VERSION). */
export function parseK3sVersion(text: string): K3sVersion {
  const m = /^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$/.exec(text);
  if (!m) throw new FmcError("USAGE", `${JSON.stringify(text)} is not a K3s version`, "K3s versions read like v1.33.5+k3s1 (github.com/k3s-io/k3s/releases)");
  return { text, major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), build: Number(m[4]) };
}

/** The version `k3s --version` prints on its first line: "k3s version v1.33.5+k3s1 (<commit>)" (k3s-io/k3s pkg/cli/cmds/root.go NewApp). */
export function parseK3sVersionOutput(stdout: string): string {
  const first = stdout.split("\n")[0]!.trim();
  const m = /^k3s version (v\d+\.\d+\.\d+\+k3s\d+)(?: |$)/.exec(first);
  if (!m) throw new FmcError("K3S_VERSION", `not what k3s --version prints: ${JSON.stringify(first.slice(0, 120))}`);
  return m[1]!;
}

/** The spec's k3s.sha256 when it pins `version` (it is the spec's version's only). */
export const pinnedSha256 = (ctx: ClusterContext, version: string): string | undefined => (version === ctx.spec.k3s.version ? ctx.spec.k3s.sha256 : undefined);

/** The bundle to install `version` from, refused when the spec pins another binary (checkBundlePin). */
export const installableBundle = (ctx: ClusterContext, version: string, bundle: K3sBundle | undefined): K3sBundle | undefined =>
  bundle && checkBundlePin(bundle, pinnedSha256(ctx, version));

/**
 * The command that puts K3s `version` in `dir` on a node: uploaded from a checked bundle (its
 * binary the spec's pin, when there is one) and hashed again on the node before it replaces
 * anything, or downloaded by the node and checked against the spec's pin or the release's
 * sha256sum-amd64.txt (the spec's pinned sha256 and airgapPath belong to its own version only);
 * `how` says which, for titles. Shared with fmc upgrade, which installs another version.
 */
export function k3sBinaryCommand(ctx: ClusterContext, version: string, dir: string, given: K3sBundle | undefined): { command: Command; how: string } {
  const bundle = installableBundle(ctx, version, given);
  if (bundle) {
    const d = sh(dir);
    const want = bundle.binary.sha256;
    const command = uploadScript(
      [
        "set -eu",
        `mkdir -p ${d}`,
        `tmp=$(mktemp ${d}/.k3s.XXXXXX)`,
        "trap 'rm -f \"$tmp\"' EXIT",
        'cat > "$tmp"',
        // what arrived, hashed here: a transfer cut short or changed on the way is never installed
        'got=$(sha256sum "$tmp" | cut -d " " -f 1)',
        `if [ "$got" != ${sh(want)} ]; then echo "the k3s binary that arrived has SHA-256 $got, not the bundle's ${want}: not installed" >&2; exit 1; fi`,
        'chmod 0755 "$tmp"',
        `mv -f "$tmp" ${d}/k3s`,
        "trap - EXIT",
        `for tool in kubectl crictl ctr; do if [ ! -e ${d}/"$tool" ] || [ -L ${d}/"$tool" ]; then ln -sf k3s ${d}/"$tool"; fi; done`,
      ].join("\n"),
      `upload k3s ${version} (${(bundle.binary.bytes / 1048576).toFixed(1)} MiB) from the bundle, check its SHA-256 on the node, install in ${dir}`,
      bundle.binary.path,
    );
    const pinned = pinnedSha256(ctx, version) ? ", the spec's k3s.sha256" : "";
    return { command, how: `from the bundle ${bundle.dir}, SHA-256 ${want.slice(0, 12)}…${pinned} checked on the node` };
  }
  let forVersion = ctx;
  if (version !== ctx.spec.k3s.version) {
    const { sha256: _sha, airgapPath: _path, ...k3s } = ctx.spec.k3s;
    forVersion = { ...ctx, spec: { ...ctx.spec, k3s: { ...k3s, version } } };
  }
  const k = forVersion.spec.k3s;
  const against = k.sha256 ? "the spec's k3s.sha256" : "the release's sha256sum-amd64.txt";
  const from = k.airgapPath ? `copied from ${k.airgapPath} on the node` : "downloaded by the node";
  return {
    command: script(k3sInstallScript(forVersion, dir), `${k.airgapPath ? `copy k3s ${version} from ${k.airgapPath}` : `download k3s ${version} from GitHub`} on the node, check it against ${against}, install in ${dir}`),
    how: `${from}, checked against ${against}`,
  };
}

