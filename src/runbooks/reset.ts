// Tearing the K3s layer down, as K3s's own k3s-killall.sh and k3s-uninstall.sh do on a node
// (k3s-io/k3s install.sh: stop the unit, kill what containerd left running, unmount the
// kubelet's and K3s's mounts, remove K3s's network interfaces and its files), in a safe
// order: agents first (their pods go with them), then the servers, the first one last, so
// etcd keeps quorum until its last members go together. What stays: the hosts, their OS and
// every other layer fmc applies (load balancers, DNS, storage, PostgreSQL), and Longhorn's
// disks (/var/lib/longhorn and the spec's Longhorn mount keep their replicas' data).
import { script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { ClusterContext } from "../state/context.js";
import type { Host } from "../model/schema.js";
import type { RunbookStep } from "./runbook.js";
import { pendingMarker } from "../ops/service.js";

/** What a node's reset removes (K3s's uninstall script removes the same). */
export const K3S_PATHS = ["/etc/rancher/k3s", "/etc/rancher/node", "/var/lib/rancher/k3s", "/var/lib/kubelet", "/run/k3s", "/run/flannel", "/var/lib/cni"] as const;

const UNITS = { server: "k3s.service", agent: "k3s-agent.service" } as const;

/** The script that tears K3s off one node; safe to run again (everything is "if present"). */
function resetNodeCommand(server: boolean): Command {
  const unit = server ? UNITS.server : UNITS.agent;
  const body = [
    "set -u",
    `systemctl disable --now ${unit} 2>/dev/null || true`,
    // containerd's shims outlive K3s's own process by design (K3s stops only itself)
    // ([c] keeps pgrep from matching this very shell, whose command line holds the pattern)
    "for p in $(pgrep -f '[c]ontainerd-shim.*/run/k3s/containerd' 2>/dev/null); do kill -9 \"$p\" 2>/dev/null || true; done",
    // every mount at or below K3s's paths (the kubelet's volumes: Longhorn's and NFS's data
    // among them), deepest first; /proc/self/mounts writes a space as \040
    `under() { awk -v paths=${quote(K3S_PATHS.join(" "))} 'BEGIN { n = split(paths, p, " ") } { m = $2; gsub(/\\\\040/, " ", m); gsub(/\\\\011/, "\\t", m); gsub(/\\\\134/, "\\\\", m); for (i = 1; i <= n; i++) if (m == p[i] || index(m, p[i] "/") == 1) { print m; next } }' /proc/self/mounts; }`,
    `mounts=$(under) || { echo "cannot read the mounts below K3s's paths (/proc/self/mounts), so nothing was removed" >&2; exit 1; }`,
    `printf '%s\\n' "$mounts" | sort -r | while read -r m; do if [ -n "$m" ]; then umount -l "$m" 2>/dev/null || true; fi; done`,
    // what could not be unmounted is never removed through: refuse before any rm
    `mounts=$(under) || { echo "cannot read the mounts below K3s's paths (/proc/self/mounts), so nothing was removed" >&2; exit 1; }`,
    `if [ -n "$mounts" ]; then echo "still mounted below K3s's paths, so nothing was removed: $(printf '%s\\n' "$mounts" | sort -r | tr '\\n' ' ')" >&2; exit 1; fi`,
    "for link in cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6; do ip link delete \"$link\" 2>/dev/null || true; done",
    // and should a mount appear meanwhile, rm stays on each path's own file system
    `rm -rf --one-file-system ${K3S_PATHS.join(" ")}`,
    // fmc's unit; drop-ins in ${unit}.d stay (other layers own them: Longhorn's mount ordering)
    `rm -f /etc/systemd/system/${unit} ${pendingMarker(unit)}`,
    "for b in /usr/local/bin /opt/bin; do for tool in kubectl crictl ctr; do if [ -L \"$b/$tool\" ] && [ \"$(readlink \"$b/$tool\")\" = k3s ]; then rm -f \"$b/$tool\"; fi; done; rm -f \"$b/k3s\"; done",
    "systemctl daemon-reload",
    `if systemctl is-active --quiet ${unit}; then echo "${unit} is still running" >&2; exit 1; fi`,
    `for p in ${K3S_PATHS.join(" ")}; do if [ -e "$p" ]; then echo "$p is still there" >&2; exit 1; fi; done`,
  ].join("\n");
  return script(body, `stop and disable ${unit}, kill its containers, unmount, remove K3s's interfaces, files, unit and binary`);
}

/** Agents first, then the servers with the first one last. */
function resetOrder(ctx: ClusterContext): { host: Host; server: boolean }[] {
  const servers = ctx.topo.servers;
  return [...ctx.topo.agents.map((host) => ({ host, server: false })), ...[...servers].reverse().map((host) => ({ host, server: true }))];
}

/** The runbook; `forget` clears this machine's record that the cluster was bootstrapped (last, once every node is clean). */
export function resetRunbook(ctx: ClusterContext, reachable: (name: string) => boolean, forget: () => Promise<string | void>): RunbookStep[] {
  const steps: RunbookStep[] = resetOrder(ctx).map(({ host, server }) =>
    reachable(host.name)
      ? { title: `tear K3s off ${host.name} (${server ? "server: its etcd member and data go" : "agent"})`, on: host.name, command: resetNodeCommand(server) }
      : { title: `${host.name} does not answer: reset it later (fmc reset again) before it is reused`, on: "this machine", act: async () => { throw new Error(`${host.name} is unreachable: its K3s is left as it is, and the cluster is not forgotten`); } },
  );
  steps.push({ title: "forget that the cluster was bootstrapped: the next fmc apply starts a new one from the first server", on: "this machine", act: forget });
  return steps;
}

/** What is destroyed, for the question asked before. */
export function resetWarning(ctx: ClusterContext): string {
  const nodes = resetOrder(ctx).map((x) => x.host.name);
  return [
    `This destroys the K3s cluster ${ctx.spec.name} on ${nodes.join(", ")}:`,
    "  - etcd's data on every server: every Kubernetes object, Secret and ConfigMap; snapshots kept on the servers go too (fmc backup etcd -o DIR first)",
    "  - every running pod and container, K3s's images, certificates, tokens, units and binary",
    "It keeps the hosts' other layers (load balancers, DNS, storage, PostgreSQL) and the Longhorn disks' files.",
  ].join("\n");
}
