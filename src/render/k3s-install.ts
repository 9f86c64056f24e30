// The K3s install script and its first-boot unit: Ignition writes both on every Flatcar
// node (/opt/fmc/install-k3s.sh, k3s-install.service), and the k3s phases and fmc upgrade
// run the same script on nodes that download K3s themselves (src/ops/k3s-cli.ts).
import type { RenderContext } from "./types.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { unitFile } from "./systemd.js";
import { sh } from "./quote.js";

/** Download attempts of the install script before it fails (and systemd restarts it), and its longest pause. */
export const K3S_INSTALL_ATTEMPTS = 12;
export const K3S_INSTALL_MAX_DELAY_S = 120;

/** The install script: Ignition runs it at first boot from /opt/fmc; the k3s phases run it on nodes without a bundle. */
export function k3sInstallScript(ctx: RenderContext, binDir = "/opt/bin"): string {
  const k = ctx.spec.k3s;
  const verify = k.sha256
    ? [`EXPECTED=${sh(k.sha256)}`]
    : ['fetch "$TMP/sha256sum-amd64.txt" "$BASE/sha256sum-amd64.txt"', "EXPECTED=$(awk '$2 == \"k3s\" { print $1 }' \"$TMP/sha256sum-amd64.txt\")"];
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "# Installs the pinned K3s binary once; a re-run with the same version does nothing.",
    "# Downloads are retried with backoff: at first boot DNS or the uplink may not be up yet",
    "# (curl's own --retry does not retry a failed name lookup).",
    "set -euo pipefail",
    "fetch() {",
    "  local delay=5 attempt=1",
    '  until curl -sfL --retry 3 -o "$1" "$2"; do',
    `    if [ "$attempt" -ge ${K3S_INSTALL_ATTEMPTS} ]; then echo "download of $2 failed $attempt times; giving up" >&2; return 1; fi`,
    '    echo "download of $2 failed (attempt $attempt); retrying in ${delay}s" >&2',
    '    sleep "$delay"',
    `    attempt=$((attempt + 1)); delay=$((delay * 2 > ${K3S_INSTALL_MAX_DELAY_S} ? ${K3S_INSTALL_MAX_DELAY_S} : delay * 2))`,
    "  done",
    "}",
    `VERSION=${sh(k.version)}`,
    `BIN=${sh(`${binDir}/k3s`)}`,
    'if [ -x "$BIN" ] && "$BIN" --version | grep -qF "$VERSION"; then exit 0; fi',
    `mkdir -p ${sh(binDir)}`,
    'TMP=$(mktemp -d); trap \'rm -rf "$TMP"\' EXIT',
    k.airgapPath
      ? [`cp ${sh(k.airgapPath)} "$TMP/k3s"`, ...(k.sha256 ? [`EXPECTED=${sh(k.sha256)}`] : ['EXPECTED=""'])]
      : [
          'BASE="https://github.com/k3s-io/k3s/releases/download/${VERSION//+/%2B}"',
          'fetch "$TMP/k3s" "$BASE/k3s"',
          ...verify,
        ],
    'if [ -n "$EXPECTED" ]; then echo "$EXPECTED  $TMP/k3s" | sha256sum --check --status || { echo "k3s checksum mismatch" >&2; exit 1; }; fi',
    'install -m 0755 "$TMP/k3s" "$BIN.new" && mv -f "$BIN.new" "$BIN"',
    // K3s's own tools, as get.k3s.io links them; a real kubectl already there stays
    `for tool in kubectl crictl ctr; do if [ ! -e ${sh(binDir)}/"$tool" ] || [ -L ${sh(binDir)}/"$tool" ]; then ln -sf k3s ${sh(binDir)}/"$tool"; fi; done`,
  );
}


/**
 * k3s-install.service: the script retries its downloads with backoff; should it still
 * fail, systemd starts it again after RestartSec, without a start limit. k3s.service
 * waits for it (Requires=, After=); while the install unit is auto-restarting it is still
 * activating, so the K3s start job waits rather than failing (systemd.service(5),
 * Restart=; oneshot units may use Restart=on-failure since systemd 244).
 */
export function k3sInstallUnit(ctx: RenderContext): string {
  return unitFile(
    {
      Unit: [
        ["Description", `Install K3s ${ctx.spec.k3s.version}`],
        ["Wants", "network-online.target"],
        ["After", "network-online.target nss-lookup.target"],
        ["StartLimitIntervalSec", "0"],
      ],
      Service: [
        ["Type", "oneshot"],
        ["RemainAfterExit", "yes"],
        ["ExecStart", "/opt/fmc/install-k3s.sh"],
        ["Restart", "on-failure"],
        ["RestartSec", "30s"],
        ["TimeoutStartSec", "infinity"],
      ],
      Install: [["WantedBy", "multi-user.target"]],
    },
    HEADER_TEXT,
  );
}
