// The seed topology of FlatcarMicroCloud as a commented spec. `fmc init` writes this
// text; with no spec file, `fmc` uses it as it is. One source for both.
export const SEED_YAML = `# FlatcarMicroCloud cluster spec. Edit, then: fmc validate && fmc render
# Reference: docs/spec.md (generated from the JSON Schema: fmc schema)
apiVersion: fmc.dev/v1alpha1
kind: Cluster
name: flatcarmicrocloud
domain: microcloud.lan            # internal DNS domain served by FreeIPA

ssh:
  user: core                      # Flatcar's default user; AlmaLinux/Debian hosts override below
  keys: []                        # add your keys: "ssh-ed25519 AAAA… you@laptop" or "~/.ssh/id_ed25519.pub"
  generatedKey: true              # fmc's own admin key, in .fmc/secrets.json (0600, never committed): fmc secrets show admin-ssh

network:
  cidr: 10.17.0.0/16              # everything private lives in here
  bridge: br0
  subnets:
    - { name: tunnel,  cidr: 10.17.0.0/24 }                  # WireGuard: VPS 10.17.0.1 <-> firewall
    - { name: dmz,     cidr: 10.17.2.0/24, libvirt: bridge } # Traefik edge nodes; out: NTP, HTTP(S) only
    - { name: infra,   cidr: 10.17.3.0/24, libvirt: bridge } # FreeIPA, PostgreSQL
    - { name: cluster, cidr: 10.17.4.0/24, libvirt: bridge } # K3s servers, agents, storage
    - { name: lb,      cidr: 10.17.5.0/24, libvirt: bridge } # HAProxy + Keepalived and the API VIP

hosts:
  # K3s servers: embedded etcd + control plane. Keep an odd count (3, 5) for quorum, 4 GiB each.
  - { name: master1, roles: [k3s-server], os: flatcar, address: 10.17.4.21, vm: { vcpu: 2, memoryMiB: 4096, diskGiB: 50 } }
  - { name: master2, roles: [k3s-server], os: flatcar, address: 10.17.4.22, vm: { vcpu: 2, memoryMiB: 4096, diskGiB: 50 } }
  - { name: master3, roles: [k3s-server], os: flatcar, address: 10.17.4.23, vm: { vcpu: 2, memoryMiB: 4096, diskGiB: 50 } }
  # K3s agents: applications and microservices; the ingress backends. Each one's data disk
  # is a Longhorn disk (70% schedulable): 3 × 140 + storage1's 28 GiB place 224 GiB with
  # 2 replicas, for the charts below: 27 GiB on 2 replicas and 174 GiB of services that copy
  # themselves, on the 1-replica class (fmc validate checks it, counting each as it is stored).
  - { name: worker1, roles: [k3s-agent], os: flatcar, address: 10.17.4.24, vm: { vcpu: 3, memoryMiB: 8192, diskGiB: 20, dataDisks: [{ name: data, sizeGiB: 200 }] } }
  - { name: worker2, roles: [k3s-agent], os: flatcar, address: 10.17.4.25, vm: { vcpu: 3, memoryMiB: 8192, diskGiB: 20, dataDisks: [{ name: data, sizeGiB: 200 }] } }
  - { name: worker3, roles: [k3s-agent], os: flatcar, address: 10.17.4.26, vm: { vcpu: 3, memoryMiB: 8192, diskGiB: 20, dataDisks: [{ name: data, sizeGiB: 200 }] } }
  # Storage: NFS server and the Longhorn disk. It joins K3s as a tainted agent so Longhorn
  # can place replicas on /mnt/longhorn-disk; it is never an ingress backend.
  - { name: storage1, roles: [storage, k3s-agent], os: flatcar, address: 10.17.4.27, vm: { vcpu: 2, memoryMiB: 4096, diskGiB: 10, dataDisks: [{ name: data, sizeGiB: 80 }] } }
  # Infrastructure services on small AlmaLinux VMs.
  - { name: freeipa1, roles: [identity], os: almalinux, address: 10.17.3.11, ssh: { user: root }, vm: { vcpu: 2, memoryMiB: 2048, diskGiB: 20 } }
  - { name: postgresql1, roles: [database], os: almalinux, address: 10.17.3.14, ssh: { user: root }, vm: { vcpu: 2, memoryMiB: 2048, diskGiB: 20 } }
  - { name: loadbalancer1, roles: [loadbalancer], os: almalinux, address: 10.17.5.11, ssh: { user: root }, vm: { vcpu: 1, memoryMiB: 1024, diskGiB: 10 } }
  - { name: loadbalancer2, roles: [loadbalancer], os: almalinux, address: 10.17.5.12, ssh: { user: root }, vm: { vcpu: 1, memoryMiB: 1024, diskGiB: 10 } }
  - { name: traefik1, roles: [edge], os: almalinux, address: 10.17.2.21, ssh: { user: root }, vm: { vcpu: 1, memoryMiB: 1024, diskGiB: 10 } }
  - { name: traefik2, roles: [edge], os: almalinux, address: 10.17.2.22, ssh: { user: root }, vm: { vcpu: 1, memoryMiB: 1024, diskGiB: 10 } }
  # The LAN firewall (pfSense in the original; a Debian nftables gateway works the same).
  - { name: firewall1, roles: [firewall], os: debian, address: 10.17.0.2, ssh: { user: root }, vm: { vcpu: 1, memoryMiB: 1024, diskGiB: 10 } }
  # The public VPS: WireGuard gateway. Its tunnel address is 10.17.0.1.
  - { name: vps1, roles: [gateway], os: debian, address: 10.17.0.1, publicAddress: 203.0.113.10, ssh: { user: root, host: 203.0.113.10 } }

vips:
  - { name: api,  address: 10.17.5.10, role: loadbalancer, routerId: 51 }  # K8s API 6443 and ingress 80/443
  - { name: edge, address: 10.17.2.10, role: edge,         routerId: 52 }  # Traefik pair, target of port forwards

k3s:
  version: v1.33.4+k3s1
  apiVip: api
  disable: [servicelb]            # HAProxy replaces servicelb; K3s's Traefik is the in-cluster ingress
                                  # (services.ingress); local-storage goes too while Longhorn is on
  # serverTaint: true             # default with agents: servers run no workloads (CriticalAddonsOnly)
  snapshotSchedule: "0 */6 * * *" # etcd snapshots on every server
  snapshotRetention: 20
  # etcdS3:                       # also copy snapshots off the servers
  #   endpoint: s3.eu-central-1.amazonaws.com
  #   bucket: my-cluster-etcd
  #   folder: flatcarmicrocloud
  #   credentialsFile: /etc/rancher/k3s/etcd-s3.env   # on each server: AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…
  reboots:
    coordinator: kured            # Flatcar updates, then kured drains and reboots one node at a time

storage:
  host: storage1
  device: /dev/vdb
  volumeGroup: data
  volumes:
    - { name: postgres_lv, size: 20G, mount: /srv/nfs/postgresql }
    - { name: shared_lv,   size: 20G, mount: /srv/nfs/shared }
    - { name: longhorn_lv, size: 100%FREE, mount: /mnt/longhorn-disk }
  exports:
    - { path: /srv/nfs/postgresql, clients: [10.17.3.14] }     # only the database host
    - { path: /srv/nfs/shared,     clients: [10.17.4.0/24] }   # pods (RWX StorageClass nfs-shared)
  longhornPath: /mnt/longhorn-disk
  sharedExport: /srv/nfs/shared

database:
  host: postgresql1
  postgresVersion: "16"
  dataDir: /var/lib/pgsql
  nfsExport: /srv/nfs/postgresql
  databases: [app]

identity:
  host: freeipa1

wireguard:
  port: 51820
  lanPeer: firewall1
  mtu: 1420                       # 1500 minus WireGuard overhead; lower it behind PPPoE
  persistentKeepalive: 25         # keeps NAT mappings open from the LAN side
  # sshFrom: [198.51.100.7/32]    # who may SSH to vps1 on its public address (unset: anyone, as a
                                  # new VPS needs); the tunnel and admin peers always may

firewall:
  host: firewall1
  wanInterface: eth0
  management: [any]              # who may SSH to the firewall itself: any = its LAN side
  # The LAN subnets reach the internet through the WAN, never its private ranges (a home LAN);
  # a subnet's egress narrows that: e.g. egress: [udp/123, tcp/443], or [] for nothing. The
  # edge subnet (dmz) gets NTP and HTTP(S) only. Admin peers (fmc wireguard add-peer) reach
  # SSH on every host and the API VIP through the tunnel.
  portForwards:
    - { description: HTTP from the tunnel to Traefik,  port: 80,  to: edge }
    - { description: HTTPS from the tunnel to Traefik, port: 443, to: edge }
  rules:
    - { description: DNS for everyone,              from: any,     to: freeipa1, protocol: udp, ports: [53] }
    - { description: DNS over TCP for everyone,     from: any,     to: freeipa1, ports: [53] }
    - { description: Kerberos and LDAP,             from: any,     to: freeipa1, ports: [88, 389, 464, 636] }
    - { description: Kerberos over UDP,             from: any,     to: freeipa1, protocol: udp, ports: [88, 464] }
    - { description: FreeIPA enrollment and web UI, from: any,     to: freeipa1, ports: [80, 443] }
    - { description: Traefik to the ingress VIP,    from: dmz,     to: api,      ports: [80, 443] }
    - { description: API and ingress NodePorts,     from: lb,      to: cluster,  ports: [6443, 30080, 30443] }
    - { description: Nodes join through the VIP,    from: cluster, to: api,      ports: [6443] }
    - { description: Apps reach PostgreSQL,         from: cluster, to: postgresql1, ports: [5432] }
    - { description: PostgreSQL data on NFS,        from: postgresql1, to: storage1, ports: [2049] }
    - { description: Metrics scrapes from the cluster, from: cluster, to: any,    ports: [9100, 8082, 8405] }
    - { description: VRRP between load balancers,   from: lb,      to: lb,       protocol: any }
    - { description: VRRP between edge nodes,       from: dmz,     to: dmz,      protocol: any }

# edge:                           # Traefik has no package: fmc installs the binary you name
#   traefikBinary:                # (fmc validate warns until then; or engine: haproxy)
#     url: https://github.com/traefik/traefik/releases/download/v3.5.0/traefik_v3.5.0_linux_amd64.tar.gz
#     sha256: "…"                 # from the release's traefik_v3.5.0_checksums.txt

cloudflare:
  zone: example.com               # your public zone; records point at the VPS, proxied
  records:
    - { name: "@" }
    - { name: www }
  sslMode: strict
  dnssec: true

# In-cluster services, installed by K3s's Helm controller. Versions are pinned here only;
# fmc validate refuses charts from retired sources (Bitnami's catalogue, ingress-nginx,
# Elastic's old stack charts, grafana/helm-charts).
services:
  longhorn:      { repo: https://charts.longhorn.io, chart: longhorn, version: 1.9.1, namespace: longhorn-system }
  nfsCsi:        { repo: https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/master/charts, chart: csi-driver-nfs, version: 4.11.0, namespace: kube-system }
  ingress:       { enabled: true }  # K3s's packaged Traefik on NodePorts 30080/30443 (HAProxy forwards 80/443 there)
  prometheus:    { repo: https://prometheus-community.github.io/helm-charts, chart: prometheus, version: 27.28.0, namespace: monitoring, storageClass: longhorn, size: 20Gi }
  grafana:       { repo: https://grafana-community.github.io/helm-charts, chart: grafana, version: 12.11.1, namespace: monitoring, storageClass: longhorn, size: 5Gi }
  # Elasticsearch and Kibana run by the ECK operator; certificates renewed by ECK
  elasticsearch: { repo: https://helm.elastic.co, chart: eck-operator, version: 3.5.0, stackVersion: 9.4.3, namespace: logging, storageClass: longhorn, size: 30Gi }
  kibana:        { enabled: true }  # beside Elasticsearch, at kibana.<domain>
  fluentBit:     { repo: https://fluent.github.io/helm-charts, chart: fluent-bit, version: 0.50.0, namespace: logging }
  # Redis with Sentinel failover on the official redis image
  redis:         { repo: https://dandydeveloper.github.io/charts, chart: redis-ha, version: 4.39.0, namespace: data, storageClass: longhorn, size: 8Gi }
  # Kafka in KRaft mode, run by the Strimzi operator (3 controller+broker nodes)
  kafka:         { repo: oci://quay.io/strimzi-helm, chart: strimzi-kafka-operator, version: 1.2.0, kafkaVersion: 4.3.1, namespace: messaging, storageClass: longhorn, size: 20Gi }

provisioning:
  libvirtUri: qemu:///system
  poolPath: /var/lib/libvirt/images/fmc
  flatcarChannel: stable
`;
