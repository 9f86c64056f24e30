// The phases of apply, in order. Plan and apply walk this same list.
import type { Phase } from "./phase.js";
import { base } from "./base.js";
import { firewall } from "./firewall.js";
import { wireguard } from "./wireguard.js";
import { dns } from "./dns.js";
import { loadbalancer } from "./loadbalancer.js";
import { edge } from "./edge.js";
import { storage } from "./storage.js";
import { database } from "./database.js";
import { longhornPrereqs } from "./longhorn.js";
import { k3sAgents, k3sServers } from "./k3s.js";

export const PHASES: readonly Phase[] = [
  // The firewall comes first: on real hosts it is every LAN subnet's gateway, so until it
  // forwards, no other LAN host reaches a package mirror (base installs packages).
  firewall, //      the LAN gateway's forwarding and nftables, with a timed revert
  base, //          hostname, resolver, sysctl, swap, time, keys
  wireguard, //     the tunnel between the VPS and the firewall
  dns, //           internal DNS (bind9, or FreeIPA's)
  storage, //       LVM volumes, mount units and kernel NFS exports on the storage host
  database, //      PostgreSQL with its data on the storage host's NFS export
  longhornPrereqs, // open-iscsi, the NFS client and kernel modules on every K3s node
  loadbalancer, //  HAProxy + Keepalived in front of the K3s API and the ingress
  k3sServers, //    K3s servers one at a time (the first bootstraps etcd), through the VIP
  k3sAgents, //     K3s agents in parallel, each with a bootstrap token that expires
  edge, //          the edge proxies (HAProxy or Traefik) + Keepalived behind the port forwards
];

export type { Phase, PhaseContext } from "./phase.js";
