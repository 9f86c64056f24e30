// Ignition (spec 3.4.0, accepted by current Flatcar stable) for every Flatcar node:
// identity, static network with the internal DNS first, K3s prerequisites, a pinned and
// checksum-verified K3s install, and on the storage node the LVM volumes, mounts and
// NFS server, all as systemd units so they come back after every reboot.
import type { Host } from "../spec/schema.js";
import type { Artifact, RenderContext } from "./types.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { k3sConfigText } from "./k3s.js";
import { unitFile } from "./systemd.js";
import { pathPart, sh } from "./quote.js";
import {
  exportsFile, k3sLonghornConfig, k3sLonghornDropIn, K3S_LONGHORN_CONFIG, longhornDiskMountUnit, longhornDisks, longhornDiskScript, longhornDiskService,
  LONGHORN_DISK_SCRIPT_PATH, LONGHORN_DISK_SERVICE, lvmPlan, lvmService, LVM_SCRIPT_PATH, nfsServerDropIn, volumeMountUnits,
} from "./storage.js";

export const IGNITION_VERSION = "3.4.0";

interface IgnFile {
  path: string;
  mode: number;
  overwrite: boolean;
  contents: { source: string };
}
interface IgnUnit {
  name: string;
  enabled?: boolean;
  mask?: boolean;
  contents?: string;
  dropins?: Array<{ name: string; contents: string }>;
}

const dataUrl = (text: string) => `data:text/plain;charset=utf-8;base64,${Buffer.from(text).toString("base64")}`;
const file = (path: string, content: string, mode = 0o644): IgnFile => ({ path, mode, overwrite: true, contents: { source: dataUrl(content) } });

export const K3S_SYSCTL = [
  "net.ipv4.ip_forward = 1",
  "net.bridge.bridge-nf-call-iptables = 1",
  "net.bridge.bridge-nf-call-ip6tables = 1",
  "fs.inotify.max_user_instances = 8192",
  "fs.inotify.max_user_watches = 524288",
  "vm.swappiness = 0",
];

export function k3sInstallScript(ctx: RenderContext): string {
  const k = ctx.spec.k3s;
  const verify = k.sha256
    ? [`EXPECTED=${sh(k.sha256)}`]
    : ['curl -sfL --retry 5 -o "$TMP/sha256sum-amd64.txt" "$BASE/sha256sum-amd64.txt"', "EXPECTED=$(awk '$2 == \"k3s\" { print $1 }' \"$TMP/sha256sum-amd64.txt\")"];
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "# Installs the pinned K3s binary once; a re-run with the same version does nothing.",
    "set -euo pipefail",
    `VERSION=${sh(k.version)}`,
    "BIN=/opt/bin/k3s",
    'if [ -x "$BIN" ] && "$BIN" --version | grep -qF "$VERSION"; then exit 0; fi',
    "mkdir -p /opt/bin",
    'TMP=$(mktemp -d); trap \'rm -rf "$TMP"\' EXIT',
    k.airgapPath
      ? [`cp ${sh(k.airgapPath)} "$TMP/k3s"`, ...(k.sha256 ? [`EXPECTED=${sh(k.sha256)}`] : ['EXPECTED=""'])]
      : [
          'BASE="https://github.com/k3s-io/k3s/releases/download/${VERSION//+/%2B}"',
          'curl -sfL --retry 5 -o "$TMP/k3s" "$BASE/k3s"',
          ...verify,
        ],
    'if [ -n "$EXPECTED" ]; then echo "$EXPECTED  $TMP/k3s" | sha256sum --check --status || { echo "k3s checksum mismatch" >&2; exit 1; }; fi',
    'install -m 0755 "$TMP/k3s" "$BIN.new" && mv -f "$BIN.new" "$BIN"',
    'for tool in kubectl crictl ctr; do ln -sf k3s "/opt/bin/$tool"; done',
  );
}

function k3sUnit(server: boolean): string {
  return unitFile(
    {
      Unit: [
        ["Description", `Lightweight Kubernetes (${server ? "server" : "agent"})`],
        ["Documentation", "https://docs.k3s.io"],
        ["Wants", "network-online.target"],
        ["After", "network-online.target k3s-install.service"],
        ["Requires", "k3s-install.service"],
      ],
      Service: [
        ["Type", "notify"],
        ["ExecStartPre", "-/sbin/modprobe br_netfilter"],
        ["ExecStartPre", "-/sbin/modprobe overlay"],
        ["ExecStart", `/opt/bin/k3s ${server ? "server" : "agent"}`],
        ["KillMode", "process"],
        ["Delegate", "yes"],
        ["LimitNOFILE", "1048576"],
        ["LimitNPROC", "infinity"],
        ["LimitCORE", "infinity"],
        ["TasksMax", "infinity"],
        ["TimeoutStartSec", "0"],
        ["Restart", "always"],
        ["RestartSec", "5s"],
      ],
      Install: [["WantedBy", "multi-user.target"]],
    },
    HEADER_TEXT,
  );
}

export function networkdFile(ctx: RenderContext, host: Host): string {
  const { topo, spec } = ctx;
  const gw = topo.gatewayOf(host.address);
  return unitFile(
    {
      Match: [["Name", host.interface]],
      Network: [
        ["Address", `${host.address}/${topo.prefixOf(host.address)}`],
        ...(gw ? ([["Gateway", gw]] as Array<[string, string]>) : []),
        // The internal DNS only: a public resolver here would leak internal names
        // and answer before FreeIPA (a defect of the original setup).
        ...topo.dnsServers.map((d): [string, string] => ["DNS", d]),
        ["Domains", spec.domain],
      ],
    },
    HEADER_TEXT,
  );
}

export function ignitionConfig(ctx: RenderContext, host: Host): Record<string, unknown> {
  const { spec, topo } = ctx;
  const isK3s = host.roles.includes("k3s-server") || host.roles.includes("k3s-agent");
  const isServer = host.roles.includes("k3s-server");
  const lhDisk = longhornDisks(spec).find((d) => d.host === host.name);
  const files: IgnFile[] = [
    file("/etc/hostname", `${host.name}\n`),
    file(`/etc/systemd/network/00-${pathPart(host.interface)}.network`, networkdFile(ctx, host)),
    file("/etc/systemd/resolved.conf.d/fmc.conf", unitFile({ Resolve: [["DNS", topo.dnsServers.join(" ")], ["Domains", spec.domain], ["FallbackDNS", ""]] })),
    file("/etc/systemd/timesyncd.conf.d/fmc.conf", unitFile({ Time: [["NTP", spec.network.ntp.join(" ")]] })),
    // Reboots after updates are coordinated by the operator, never all nodes at once.
    file("/etc/flatcar/update.conf", `GROUP=${spec.provisioning.flatcarChannel}\nREBOOT_STRATEGY=off\n`, 0o644),
  ];
  const units: IgnUnit[] = [
    { name: "swap.target", mask: true },
    { name: "systemd-timesyncd.service", enabled: true },
    // Longhorn needs iSCSI on every node that may attach a volume.
    { name: "iscsid.service", enabled: true },
  ];
  if (isK3s) {
    files.push(
      file("/etc/sysctl.d/90-fmc-k3s.conf", lines(HEADER("#"), K3S_SYSCTL)),
      file("/etc/modules-load.d/fmc-k3s.conf", lines("br_netfilter", "overlay", "iscsi_tcp")),
      file("/etc/rancher/k3s/config.yaml", k3sConfigText(ctx, host), 0o600),
      file("/opt/fmc/install-k3s.sh", k3sInstallScript(ctx), 0o755),
    );
    units.push(
      {
        name: "k3s-install.service",
        enabled: true,
        contents: unitFile({
          Unit: [["Description", `Install K3s ${spec.k3s.version}`], ["Wants", "network-online.target"], ["After", "network-online.target"]],
          Service: [["Type", "oneshot"], ["RemainAfterExit", "yes"], ["ExecStart", "/opt/fmc/install-k3s.sh"]],
          Install: [["WantedBy", "multi-user.target"]],
        }),
      },
      { name: isServer ? "k3s.service" : "k3s-agent.service", enabled: true, contents: k3sUnit(isServer), ...(lhDisk ? { dropins: [{ name: "fmc-longhorn-disk.conf", contents: k3sLonghornDropIn(lhDisk) }] } : {}) },
    );
  }
  // a worker's Longhorn disk: formatted only when blank, mounted where Longhorn looks
  if (isK3s && lhDisk?.kind === "disk") {
    const mount = longhornDiskMountUnit(lhDisk);
    files.push(file(LONGHORN_DISK_SCRIPT_PATH, longhornDiskScript(lhDisk), 0o755), file(K3S_LONGHORN_CONFIG, k3sLonghornConfig(), 0o600));
    units.push({ name: LONGHORN_DISK_SERVICE, enabled: true, contents: longhornDiskService() }, { name: mount.name, enabled: true, contents: mount.content });
  }
  if (spec.storage && host.name === spec.storage.host) {
    files.push(file(LVM_SCRIPT_PATH, lvmPlan(ctx), 0o755), file("/etc/exports", exportsFile(ctx)));
    units.push({ name: "fmc-lvm.service", enabled: true, contents: lvmService() });
    for (const u of volumeMountUnits(ctx)) units.push({ name: u.name, enabled: true, contents: u.content });
    units.push({ name: "nfs-server.service", enabled: true, dropins: [{ name: "fmc.conf", contents: nfsServerDropIn(ctx) }] });
  }
  return {
    ignition: { version: IGNITION_VERSION },
    passwd: { users: [{ name: topo.sshUser(host), sshAuthorizedKeys: [...topo.keysOf(host)] }] },
    storage: { files: files.sort((a, b) => a.path.localeCompare(b.path)) },
    systemd: { units: units.sort((a, b) => a.name.localeCompare(b.name)) },
  };
}

export function renderIgnition(ctx: RenderContext): Artifact[] {
  return ctx.spec.hosts
    .filter((h) => h.os === "flatcar")
    .map((h) => ({ path: `ignition/${h.name}.ign`, content: JSON.stringify(ignitionConfig(ctx, h), null, 2) + "\n", secret: true }));
}
