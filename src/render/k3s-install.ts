// The K3s install script and its first-boot unit: Ignition writes both on every Flatcar
// node (/opt/fmc/install-k3s.sh, k3s-install.service), and the k3s phases and fmc upgrade
// run the same script on nodes that download K3s themselves (src/k3s/k3s-cli.ts).
import type { ClusterContext } from "./types.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { unitFile } from "./systemd.js";
import { sh } from "./quote.js";

/** Download attempts of the install script before it fails (and systemd restarts it), and its longest pause. */
export const K3S_INSTALL_ATTEMPTS = 12;
export const K3S_INSTALL_MAX_DELAY_S = 120;

/**
 * Each curl call's limits, so a dead connection or a stalled transfer fails (and is retried)
 * instead of hanging: the connect, a transfer below 10 KiB/s for a minute, and the whole call
 * (the binary is about 70 MB: 15 min is 80 KB/s on average, the time the k3s phases allow it).
 */
const K3S_CURL_LIMITS = { connectTimeoutS: 30, speedLimitBps: 10_240, speedTimeS: 60, maxTimeS: 900 } as const;

/**
 * How long one run of k3s-install.service may take before systemd stops it and, after
 * RestartSec, starts it again: more than the script's pauses between attempts (875 s) and one
 * slow download, never forever.
 */
const K3S_INSTALL_TIMEOUT = "1h";

/**
 * Shell: the version word of `k3s --version`'s first line ("k3s version v1.33.4+k3s1 (<commit>)",
 * k3s-io/k3s pkg/cli/cmds/root.go), nothing when the binary prints something else. Compared
 * whole: v1.33.4+k3s10 is not v1.33.4+k3s1. `bin` is a shell word (quoted by the caller).
 */
export const k3sVersionOf = (bin: string): string => `${bin} --version 2>/dev/null | awk 'NR == 1 && $1 == "k3s" && $2 == "version" { print $3 } { exit }'`;

/**
 * The install script: Ignition runs it at first boot from /opt/fmc; the k3s phases and fmc
 * upgrade run it on nodes without a bundle. It installs nothing it can't check: the binary's
 * SHA-256 must equal the spec's k3s.sha256 or, without one, the single k3s line of the
 * release's sha256sum-amd64.txt; no such value (no line, an air-gapped path without a pin)
 * is a refusal, never a skipped check.
 */
export function k3sInstallScript(ctx: ClusterContext, binDir = "/opt/bin"): string {
  const k = ctx.spec.k3s;
  const c = K3S_CURL_LIMITS;
  // what the binary must hash to, and where that value comes from (for the messages)
  const expect = k.sha256
    ? [`EXPECTED=${sh(k.sha256)}`, "SOURCE=\"k3s.sha256 in the spec\""]
    : k.airgapPath
      ? ['EXPECTED=""', `SOURCE=${sh(`k3s.airgapPath (${k.airgapPath}) is set without k3s.sha256 in the spec: nothing to check the binary against`)}`]
      : [
          'fetch "$TMP/sha256sum-amd64.txt" "$BASE/sha256sum-amd64.txt"',
          "EXPECTED=$(awk '$2 == \"k3s\" || $2 == \"*k3s\" { print $1 }' \"$TMP/sha256sum-amd64.txt\")",
          'SOURCE="the release\'s checksum file $BASE/sha256sum-amd64.txt"',
        ];
  const check = [
    'if [ -z "$EXPECTED" ]; then echo "k3s $VERSION not installed: $SOURCE has no line for k3s" >&2; exit 1; fi',
    'if ! [[ $EXPECTED =~ ^[0-9a-f]{64}$ ]]; then echo "k3s $VERSION not installed: $SOURCE does not give one SHA-256 for k3s" >&2; exit 1; fi',
  ];
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "# Installs the pinned K3s binary once; a re-run with the same version does nothing.",
    "# Downloads are retried with backoff: at first boot DNS or the uplink may not be up yet",
    "# (curl's own --retry does not retry a failed name lookup); each one gives up on a dead",
    "# connection or a stalled transfer instead of hanging.",
    "set -euo pipefail",
    "fetch() {",
    "  local delay=5 attempt=1",
    `  until curl -sfL --retry 3 --connect-timeout ${c.connectTimeoutS} --speed-limit ${c.speedLimitBps} --speed-time ${c.speedTimeS} --max-time ${c.maxTimeS} -o "$1" "$2"; do`,
    `    if [ "$attempt" -ge ${K3S_INSTALL_ATTEMPTS} ]; then echo "download of $2 failed $attempt times; giving up" >&2; return 1; fi`,
    '    echo "download of $2 failed (attempt $attempt); retrying in ${delay}s" >&2',
    '    sleep "$delay"',
    `    attempt=$((attempt + 1)); delay=$((delay * 2 > ${K3S_INSTALL_MAX_DELAY_S} ? ${K3S_INSTALL_MAX_DELAY_S} : delay * 2))`,
    "  done",
    "}",
    `VERSION=${sh(k.version)}`,
    `BIN=${sh(`${binDir}/k3s`)}`,
    `if [ -x "$BIN" ] && [ "$(${k3sVersionOf('"$BIN"')})" = "$VERSION" ]; then exit 0; fi`,
    'TMP=$(mktemp -d); trap \'rm -rf "$TMP"\' EXIT',
    k.airgapPath
      ? [...expect, ...check, `cp ${sh(k.airgapPath)} "$TMP/k3s"`]
      : ['BASE="https://github.com/k3s-io/k3s/releases/download/${VERSION//+/%2B}"', 'fetch "$TMP/k3s" "$BASE/k3s"', ...expect, ...check],
    'if ! echo "$EXPECTED  $TMP/k3s" | sha256sum --check --status; then',
    '  echo "k3s $VERSION not installed: its SHA-256 is $(sha256sum "$TMP/k3s" | cut -d " " -f 1), expected $EXPECTED ($SOURCE)" >&2; exit 1',
    "fi",
    `mkdir -p ${sh(binDir)}`,
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
 * Restart=; oneshot units may use Restart=on-failure since systemd 244). A run that takes
 * longer than K3S_INSTALL_TIMEOUT is stopped and counts as a failure: restarted too.
 */
export function k3sInstallUnit(ctx: ClusterContext): string {
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
        ["TimeoutStartSec", K3S_INSTALL_TIMEOUT],
      ],
      Install: [["WantedBy", "multi-user.target"]],
    },
    HEADER_TEXT,
  );
}
