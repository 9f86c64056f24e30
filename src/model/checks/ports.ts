// What each role listens on, and two listeners on one port of a host. The firewall phase
// opens the same list (rolePorts), so a port is checked and opened from one source.
import type { Host, Role, Spec } from "../schema.js";
import type { Checker } from "./context.js";

/** The port K3s servers serve the Kubernetes API on, whatever the load balancer's frontend port. */
export const K3S_API_PORT = 6443;

/** Ports each role listens on, for conflict detection: "6443/tcp", what uses it, and the setting that chose it. */
export function rolePorts(spec: Spec, role: Role): Array<[string, string, string?]> {
  const lb = spec.loadBalancer;
  switch (role) {
    case "loadbalancer":
      return [
        [`${lb.apiPort}/tcp`, "HAProxy API frontend", "loadBalancer.apiPort"],
        [`${lb.httpPort}/tcp`, "HAProxy HTTP frontend", "loadBalancer.httpPort"],
        [`${lb.httpsPort}/tcp`, "HAProxy HTTPS frontend", "loadBalancer.httpsPort"],
        [`${lb.statsPort}/tcp`, "HAProxy stats", "loadBalancer.statsPort"],
        [`${lb.metricsPort}/tcp`, "HAProxy metrics", "loadBalancer.metricsPort"],
      ];
    case "edge":
      return [["80/tcp", "Traefik web"], ["443/tcp", "Traefik websecure"], [`${spec.edge.metricsPort}/tcp`, "Traefik metrics", "edge.metricsPort"]];
    case "k3s-server":
      return [[`${K3S_API_PORT}/tcp`, "kube-apiserver"], ["2379/tcp", "etcd client"], ["2380/tcp", "etcd peer"], ...k3sNodePorts(spec)];
    case "k3s-agent":
      return k3sNodePorts(spec);
    case "identity":
      return [
        ["53/udp", "DNS"], ["53/tcp", "DNS"], ["80/tcp", "FreeIPA web UI and enrollment"], ["88/tcp", "Kerberos"], ["88/udp", "Kerberos"],
        ["389/tcp", "LDAP"], ["443/tcp", "FreeIPA web UI"], ["464/tcp", "Kerberos kpasswd"], ["464/udp", "Kerberos kpasswd"], ["636/tcp", "LDAPS"],
      ];
    case "database":
      return [["5432/tcp", "PostgreSQL"]];
    case "storage":
      return [["2049/tcp", "NFS"]];
    case "gateway":
      return [
        [`${spec.wireguard?.port ?? 51820}/udp`, "WireGuard", "wireguard.port"],
        ...(spec.wireguard?.forwardPorts ?? []).map((p, i): [string, string, string] => [`${p}/tcp`, "public port forward", `wireguard.forwardPorts[${i}]`]),
      ];
    case "firewall":
      return [];
  }
}

/** What every K3s node listens on: kubelet, flannel's VXLAN and the ingress NodePorts. */
function k3sNodePorts(spec: Spec): Array<[string, string, string?]> {
  const np = spec.k3s.ingressNodePorts;
  return [["10250/tcp", "kubelet"], ["8472/udp", "flannel VXLAN"], [`${np.http}/tcp`, "ingress NodePort (HTTP)", "k3s.ingressNodePorts.http"], [`${np.https}/tcp`, "ingress NodePort (HTTPS)", "k3s.ingressNodePorts.https"]];
}

/**
 * Two listeners on one port. Within one role it is a setting that clashes (blamed on that
 * setting, once for the whole spec); across roles it is the host's roles that clash.
 */
export function checkPorts(c: Checker, h: Host, path: string): void {
  const used = new Map<string, { what: string; role: Role; at?: string }>();
  for (const role of new Set(h.roles)) {
    for (const [port, what, at] of rolePorts(c.spec, role)) {
      const prev = used.get(port);
      if (!prev) used.set(port, { what, role, at });
      else if (prev.what === what) continue;
      else if (prev.role === role) {
        // blame the setting the user wrote, not the one left at its default
        const blamed = at && c.explicit(at) ? at : prev.at && c.explicit(prev.at) ? prev.at : (at ?? prev.at ?? `${path}.roles`);
        c.err(blamed, `port ${port} is used by both ${prev.what} and ${what}`, "give each its own port");
      }
      else c.err(`${path}.roles`, `port ${port} on ${h.name} is used by both ${prev.what} and ${what}`, "put these roles on different hosts");
    }
  }
}
