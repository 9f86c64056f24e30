// The keys K3s accepts in config.yaml (its long flag names), for server and agent. fmc
// refuses any other key in k3s.serverArgs / k3s.agentArgs: a typo there would otherwise
// surface only when K3s refuses to start on the booted nodes.
// Sources: github.com/k3s-io/k3s pkg/cli/cmds/server.go (stored commit 4dcfdfb577f9, hidden
// flags included) and agent.go (stored commit 00cc29ba2779); docs.k3s.io cli/server.md and
// cli/agent.md "CLI Help" blocks (k3s-io/docs commits 02434960d6d5, 1f023c058c5f), which add
// the flags of newer releases (supervisor-metrics, node-internal-dns, etcd-s3-proxy, …).

export const K3S_SERVER_FLAGS: ReadonlySet<string> = new Set([
  "advertise-address", "advertise-port", "agent-token", "agent-token-file", "airgap-extra-registry",
  "alsologtostderr", "bind-address", "cluster-cidr", "cluster-dns", "cluster-domain", "cluster-init",
  "cluster-reset", "cluster-reset-restore-path", "config", "container-runtime-endpoint", "data-dir",
  "datastore-cafile", "datastore-certfile", "datastore-endpoint", "datastore-keyfile", "debug",
  "default-local-storage-path", "default-runtime", "disable", "disable-agent", "disable-apiserver",
  "disable-cloud-controller", "disable-controller-manager", "disable-default-registry-endpoint",
  "disable-etcd", "disable-helm-controller", "disable-kube-proxy", "disable-network-policy",
  "disable-scheduler", "docker", "egress-selector-mode", "embedded-registry", "enable-pprof",
  "etcd-arg", "etcd-disable-snapshots", "etcd-expose-metrics", "etcd-s3", "etcd-s3-access-key",
  "etcd-s3-bucket", "etcd-s3-config-secret", "etcd-s3-endpoint", "etcd-s3-endpoint-ca",
  "etcd-s3-folder", "etcd-s3-insecure", "etcd-s3-proxy", "etcd-s3-region", "etcd-s3-secret-key",
  "etcd-s3-skip-ssl-verify", "etcd-s3-timeout", "etcd-snapshot-compress", "etcd-snapshot-dir",
  "etcd-snapshot-name", "etcd-snapshot-retention", "etcd-snapshot-schedule-cron", "flannel-backend",
  "flannel-cni-conf", "flannel-conf", "flannel-external-ip", "flannel-iface", "flannel-ipv6-masq",
  "helm-job-image", "https-listen-port", "image-credential-provider-bin-dir",
  "image-credential-provider-config", "image-service-endpoint", "kube-apiserver-arg",
  "kube-cloud-controller-arg", "kube-cloud-controller-manager-arg", "kube-controller-arg",
  "kube-controller-manager-arg", "kube-proxy-arg", "kube-scheduler-arg", "kubelet-arg",
  "lb-server-port", "log", "node-external-dns", "node-external-ip", "node-internal-dns", "node-ip",
  "node-label", "node-name", "node-taint", "nonroot-devices", "pause-image", "prefer-bundled-bin",
  "private-registry", "protect-kernel-defaults", "resolv-conf", "rootless", "secrets-encryption",
  "secrets-encryption-provider", "selinux", "server", "service-cidr", "service-node-port-range",
  "servicelb-namespace", "snapshotter", "supervisor-metrics", "system-default-registry", "tls-san",
  "tls-san-security", "token", "token-file", "v", "vmodule", "vpn-auth", "vpn-auth-file",
  "with-node-id", "write-kubeconfig", "write-kubeconfig-group", "write-kubeconfig-mode",
]);

export const K3S_AGENT_FLAGS: ReadonlySet<string> = new Set([
  "airgap-extra-registry", "alsologtostderr", "bind-address", "config", "container-runtime-endpoint",
  "data-dir", "debug", "default-runtime", "disable-apiserver-lb", "disable-default-registry-endpoint",
  "docker", "enable-pprof", "flannel-cni-conf", "flannel-conf", "flannel-iface",
  "image-credential-provider-bin-dir", "image-credential-provider-config", "image-service-endpoint",
  "kube-proxy-arg", "kubelet-arg", "lb-server-port", "log", "node-external-dns", "node-external-ip",
  "node-internal-dns", "node-ip", "node-label", "node-name", "node-taint", "nonroot-devices",
  "pause-image", "prefer-bundled-bin", "private-registry", "protect-kernel-defaults", "resolv-conf",
  "rootless", "selinux", "server", "snapshotter", "token", "token-file", "v", "vmodule", "vpn-auth",
  "vpn-auth-file", "with-node-id",
]);

/** Valid items of --disable. */
export const K3S_DISABLE_ITEMS = ["coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes"] as const;
