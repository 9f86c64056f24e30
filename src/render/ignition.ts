// Ignition (spec 3.3.0: the lowest spec with everything used here, accepted by Flatcar stable
// and by Ignition 2.14, Debian 12's, which refuses 3.4.0) for every Flatcar node:
// identity, static network with the internal DNS first, K3s prerequisites, a pinned and
// checksum-verified K3s install, and on the storage node the LVM volumes, mounts and
// NFS server, all as systemd units so they come back after every reboot. K3s itself is
// written but not enabled: the k3s phases start it in order (src/phases/k3s.ts).
import type { Host } from "../model/schema.js";
import { longhornDisks } from "../model/capacity.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER, lines, HEADER_TEXT } from "./types.js";
import { K3S_RESOLV_CONF, k3sFirstBootConfigText, k3sResolvConf } from "./k3s.js";
import { unitFile } from "./systemd.js";
import { flatcarResolverFile } from "./resolver.js";
import { FAMILIES } from "../hosts/os.js";
import { ntpSources } from "../model/ntp.js";
import { pathPart, systemdPath } from "./quote.js";
import { k3sInstallScript, k3sInstallUnit } from "./k3s-install.js";
import {
  exportsFile, k3sLonghornConfig, k3sLonghornDropIn, K3S_LONGHORN_CONFIG, longhornDiskMountUnit, longhornDiskScript, longhornDiskService,
  LONGHORN_DISK_SCRIPT_PATH, LONGHORN_DISK_SERVICE, lvmPlan, lvmService, LVM_SCRIPT_PATH, nfsServerDropIn, volumeMountUnits,
} from "./storage.js";

/** Nothing here needs 3.4.0 (its additions are LUKS discard/openOptions and Tang advertisements). */
const IGNITION_VERSION = "3.3.0";

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

// test/unit/k3s-review.test.ts still imports these from here
export { K3S_INSTALL_ATTEMPTS, K3S_INSTALL_MAX_DELAY_S, k3sInstallScript } from "./k3s-install.js";

export const K3S_SYSCTL = [
  "net.ipv4.ip_forward = 1",
  "net.bridge.bridge-nf-call-iptables = 1",
  "net.bridge.bridge-nf-call-ip6tables = 1",
  "fs.inotify.max_user_instances = 8192",
  "fs.inotify.max_user_watches = 524288",
  "vm.swappiness = 0",
];

/**
 * k3s.service (servers) or k3s-agent.service, as get.k3s.io writes them. On Flatcar the
 * binary is /opt/bin/k3s and the unit waits for k3s-install.service (Ignition's first-boot
 * install); where the k3s phases install the binary, there is no install unit.
 */
export function k3sUnit(server: boolean, s3CredentialsFile?: string, o: { bin?: string; installUnit?: boolean } = {}): string {
  const installUnit = o.installUnit ?? true;
  return unitFile(
    {
      Unit: [
        ["Description", `Lightweight Kubernetes (${server ? "server" : "agent"})`],
        ["Documentation", "https://docs.k3s.io"],
        ["Wants", "network-online.target"],
        ["After", `network-online.target${installUnit ? " k3s-install.service" : ""}`],
        ...(installUnit ? ([["Requires", "k3s-install.service"]] as Array<[string, string]>) : []),
      ],
      Service: [
        ["Type", "notify"],
        ["ExecStartPre", "-/sbin/modprobe br_netfilter"],
        ["ExecStartPre", "-/sbin/modprobe overlay"],
        // K3s reads etcd-s3-access-key/-secret-key from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
        // (k3s-io/k3s pkg/cli/cmds/server.go); "-": a missing file must not keep K3s down
        ...(server && s3CredentialsFile ? ([["EnvironmentFile", `-${systemdPath(s3CredentialsFile)}`]] as Array<[string, string]>) : []),
        ["ExecStart", `${systemdPath(o.bin ?? "/opt/bin/k3s")} ${server ? "server" : "agent"}`],
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

function networkdFile(ctx: ClusterContext, host: Host): string {
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

/**
 * update_engine still downloads and applies updates; locksmithd reboots nothing
 * (REBOOT_STRATEGY=off). Flatcar releases after 3067.0.0 then leave /run/reboot-required,
 * which kured (k3s.reboots) watches: it drains and reboots one node at a time
 * (flatcar.org/docs/latest/setup/releases/update-strategies).
 */
function flatcarUpdateConf(ctx: ClusterContext): string {
  return lines(HEADER("#"), `GROUP=${ctx.spec.provisioning.flatcarChannel}`, "REBOOT_STRATEGY=off");
}

export function ignitionConfig(ctx: ClusterContext, host: Host): Record<string, unknown> {
  const { spec, topo } = ctx;
  const isK3s = host.roles.includes("k3s-server") || host.roles.includes("k3s-agent");
  const isServer = host.roles.includes("k3s-server");
  const lhDisk = longhornDisks(spec).find((d) => d.host === host.name);
  const files: IgnFile[] = [
    file("/etc/hostname", `${host.name}\n`),
    file(`/etc/systemd/network/00-${pathPart(host.interface)}.network`, networkdFile(ctx, host)),
    // the resolver and time sync exactly as the base phase writes them, so it finds nothing to change
    ...[flatcarResolverFile(spec.network.upstreamDns), FAMILIES.flatcar.timeConfig(ntpSources(spec, "flatcar"))].map((f) => file(f.path, f.content)),
    file("/etc/flatcar/update.conf", flatcarUpdateConf(ctx), 0o644),
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
      file("/etc/rancher/k3s/config.yaml", k3sFirstBootConfigText(ctx, host), 0o600),
      file(K3S_RESOLV_CONF, k3sResolvConf(ctx)),
      file("/opt/fmc/install-k3s.sh", k3sInstallScript(ctx), 0o755),
    );
    units.push(
      {
        name: "k3s-install.service",
        enabled: true,
        contents: k3sInstallUnit(ctx),
      },
      // written, not enabled: a node never starts K3s on its own at first boot. The k3s
      // phases enable and start it in fmc's order (servers one at a time, each waited for,
      // then agents with a bootstrap token pinning the cluster CA). No `enabled: false`
      // either: that would leave a "disable" line in Ignition's preset file for good.
      { name: isServer ? "k3s.service" : "k3s-agent.service", contents: k3sUnit(isServer, spec.k3s.etcdS3?.credentialsFile), ...(lhDisk ? { dropins: [{ name: "fmc-longhorn-disk.conf", contents: k3sLonghornDropIn(lhDisk) }] } : {}) },
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

export function renderIgnition(ctx: ClusterContext): Artifact[] {
  return ctx.spec.hosts
    .filter((h) => h.os === "flatcar")
    .map((h) => ({ path: `ignition/${h.name}.ign`, content: JSON.stringify(ignitionConfig(ctx, h), null, 2) + "\n", secret: true }));
}
