// The lab's stand-in for the k3s binary, as a shell script (its own file, so it is read and
// checked as what it is: test/unit/k3s-standin.test.ts runs `sh -n` and shellcheck on it).
// src/lab/k3s-standin.ts ships it in the lab's K3s bundle and lays out what it needs.
import { K3S_DB_DIR, K3S_SNAPSHOT_DIR } from "../k3s/etcd.js";

/** Where this machine's etcd is (Debian's etcd-server); without it the lab runs no stand-in. */
export const HOST_ETCD = "/usr/bin/etcd";
/** K3s's etcd TLS directory (k3s-io/k3s pkg/daemons/control/deps/deps.go). */
export const K3S_ETCD_TLS = "/var/lib/rancher/k3s/server/tls/etcd";
/** K3s's etcd data directory (k3s-io/k3s pkg/etcd/etcd.go, dbDir). */
export const K3S_ETCD_DATA = "/var/lib/rancher/k3s/server/db/etcd";
export const STANDIN_UNIT = "k3s.service";
export const BIN = "/usr/local/lib/fmc-lab/etcd";
/** This machine's etcdctl (Debian's etcd-client): the lab's `k3s etcd-snapshot` uses it. */
export const HOST_ETCDCTL = "/usr/bin/etcdctl";
export const CTL = "/usr/local/lib/fmc-lab/etcdctl";

export const LIB = "/usr/local/lib/fmc-lab";

/**
 * The lab's stand-in for the k3s binary, shipped in the lab's K3s bundle and installed by
 * `fmc apply` exactly as a real one is (uploaded, SHA-256 checked, fmc's own unit). What it
 * does in K3s's place, with a real etcd underneath:
 * - `k3s server`: reads /etc/rancher/k3s/config.yaml as K3s does (flags on the command line
 *   win over it); with cluster-init it starts a new one-member etcd; with `server:` it joins:
 *   K3s asks the server URL for the members, the stand-in asks the other servers' etcd
 *   directly (member add), then starts a member that syncs; with a data directory it starts
 *   the existing member (and clears a reset-flag, as K3s's normal start does). etcd itself
 *   tells systemd it is ready (Type=notify), as K3s does once it serves. The script stays the
 *   unit's main process and ends etcd and the kubelet loop below when the unit stops, so no
 *   process of the unit outlives it (fmc's unit has KillMode=process, as K3s's own).
 * - `k3s server --cluster-reset --cluster-reset-restore-path=FILE`: K3s's restore. Refused
 *   with K3s's words while a server URL is set; otherwise this machine's etcdctl restores FILE
 *   (`etcdctl snapshot restore`, which checks the snapshot's hash) into a fresh data
 *   directory as a one-member cluster of this node with its own peer URL, the current data
 *   goes to server/db/etcd-old-<unix time>, etcd runs until it is healthy, and then, like
 *   K3s, it logs "Managed etcd cluster membership has been reset, restart without
 *   --cluster-reset flag now. …", leaves server/db/reset-flag and exits 0 (it does not keep
 *   running). The next `k3s server` starts from the restored data; servers whose server/db
 *   was set aside join it again by member add.
 * - `k3s agent`: checks the token as K3s's TLS bootstrap does (K10<CA hash>::…: the hash of
 *   the cluster CA must match) and that the bootstrap-token Secret exists in the cluster's
 *   etcd, unexpired, with this secret; then marks itself admitted and idles.
 * - The kubelet's part, on servers and agents while their unit runs: the Node is registered
 *   under /registry/minions/<node name> (K3s's node name: node-name, else the host name) and
 *   its Lease in kube-node-lease is renewed every 10 s, through etcd's JSON gateway.
 * - `k3s kubectl` on a server: `get --raw=/readyz` (answers from etcd's health: no API server
 *   runs), `apply -f -` (stores the object in etcd under /registry/…, as the API server
 *   would), and the node verbs in kubectl's own output: `cordon`/`uncordon` (`node/N
 *   cordoned`, `… already cordoned`, `node/N uncordoned`), `drain N [flags]` (`node/N
 *   cordoned`, `node/N drained`), `delete node N` (`node "N" deleted`; the Node and its Lease
 *   are gone), `get node N -o json` (a Node: metadata.name, role labels, spec.unschedulable
 *   and its taint when cordoned, status.conditions Ready True while the Lease was renewed in
 *   the last 50 s and Unknown after, status.nodeInfo.kubeletVersion the stand-in's version).
 *   An unknown node: `Error from server (NotFound): nodes "N" not found`, exit 1. These are
 *   stand-ins: no pods run in the lab, so a drain evicts nothing and is its cordon.
 * - `k3s etcd-snapshot save [--name N] [--dir D]` (K3s's file names), `--version`.
 */
export function k3sStandIn(version: string): string {
  return `#!/bin/sh
# fmc lab stand-in for K3s ${version}: K3s can't run on the lab machine. See src/lab/k3s-standin-script.ts.
set -eu
VERSION='${version}'
LIB=${LIB}
TLS=${K3S_ETCD_TLS}
DATA=${K3S_ETCD_DATA}
DB=${K3S_DB_DIR}
CONFIG=/etc/rancher/k3s/config.yaml
ctl() { ETCDCTL_API=3 "$LIB/etcdctl" --cacert="$TLS/server-ca.crt" --cert="$TLS/client.crt" --key="$TLS/client.key" "$@"; }
# a top-level scalar of config.yaml (what fmc writes: one "key: value" per line)
cfg() { [ -f "$CONFIG" ] && sed -n "s/^$1: *//p" "$CONFIG" | head -n 1 | sed "s/^[\\"']//; s/[\\"']\\$//"; }
die() { echo "k3s (fmc lab stand-in): $*" >&2; exit 1; }
# K3s's node name: node-name in config.yaml, else the host name
nodename() { n=$(cfg node-name || true); [ -n "$n" ] || n=$(hostname); printf '%s' "$n"; }
b64() { printf '%s' "$1" | base64 -w0; }
# etcd's v3 JSON gateway on the servers (this one first when it is one), with the lab's etcd client certificate
kv() {
  for p in $ADDRESS $PEERS; do
    case " $PEERS " in *" $p "*) ;; *) continue ;; esac
    if r=$(curl -sf --connect-timeout 2 --max-time 4 --cacert "$LIB/etcd-ca.crt" --cert "$LIB/etcd-client.crt" --key "$LIB/etcd-client.key" -X POST -d "$2" "https://$p:2379/v3/kv/$1" 2>/dev/null); then
      printf '%s' "$r"
      return 0
    fi
  done
  return 1
}
# a key's value ("" when absent); fails when no server answers
kvget() {
  r=$(kv range "{\\"key\\":\\"$(b64 "$1")\\"}") || return 1
  printf '%s' "$r" | sed -n 's/.*"value":"\\([^"]*\\)".*/\\1/p' | base64 -d 2>/dev/null || true
}
kvput() { kv put "{\\"key\\":\\"$(b64 "$1")\\",\\"value\\":\\"$(b64 "$2")\\"}" >/dev/null; }
kvdel() { kv deleterange "{\\"key\\":\\"$(b64 "$1")\\"}" >/dev/null; }

# ---- the kubelet's part: a Node under /registry/minions/<name> (JSON here; the API server
# stores protobuf) and its Lease in kube-node-lease, renewed every 10 s as the kubelet does
node_object() { # name address role created unschedulable(0|1)
  labels="\\"kubernetes.io/hostname\\":\\"$1\\",\\"kubernetes.io/os\\":\\"linux\\""
  if [ "$3" = server ]; then labels="$labels,\\"node-role.kubernetes.io/control-plane\\":\\"true\\",\\"node-role.kubernetes.io/etcd\\":\\"true\\",\\"node-role.kubernetes.io/master\\":\\"true\\""; fi
  spec='{}'
  if [ "$5" = 1 ]; then spec='{"unschedulable":true}'; fi
  printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"%s","creationTimestamp":"%s","labels":{%s}},"spec":%s,"status":{"addresses":[{"address":"%s","type":"InternalIP"},{"address":"%s","type":"Hostname"}],"nodeInfo":{"kubeletVersion":"%s","operatingSystem":"linux","architecture":"amd64"}}}' \\
    "$1" "$4" "$labels" "$spec" "$2" "$1" "$VERSION"
}
# registers this node as the kubelet does at its start: a Node that exists keeps its creation time and cordon
register() { # role
  name=$(nodename)
  prev=$(kvget "/registry/minions/$name") || return 1
  created=$(printf '%s' "$prev" | sed -n 's/.*"creationTimestamp":"\\([^"]*\\)".*/\\1/p')
  if [ -z "$created" ]; then created=$(date -u +%FT%TZ); fi
  unsched=0
  case "$prev" in *'"unschedulable":true'*) unsched=1 ;; esac
  kvput "/registry/minions/$name" "$(node_object "$name" "$ADDRESS" "$1" "$created" "$unsched")"
}
renew() {
  name=$(nodename)
  kvput "/registry/leases/kube-node-lease/$name" "$(printf '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"%s","namespace":"kube-node-lease"},"spec":{"holderIdentity":"%s","leaseDurationSeconds":40,"renewTime":"%s"}}' "$name" "$name" "$(date -u +%FT%T.%6NZ)")"
}
# the kubelet's loop: register once, then renew the Lease every 10 s, until SIGTERM, which
# ends it once a request under way is answered (at most 4 s): none of the unit's processes
# is left behind in its cgroup after a stop (one that ends there while the next start sets
# the cgroup up can fail that start: status 219/CGROUP)
kubelet_loop() { # role
  set +e
  sp=
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM INT
  reg=
  while :; do
    if [ -z "$reg" ] && register "$1"; then reg=1; fi
    if [ -n "$reg" ]; then renew; n=10; else n=2; fi
    sleep "$n" &
    sp=$!
    wait "$sp"
  done
}
# a server's processes: etcd (which tells systemd it is ready) and the kubelet's loop beside
# it, both ended when the unit stops; etcd ending by itself ends the unit with its status
run_etcd() { # etcd's arguments
  "$LIB/etcd" "$@" &
  etcd=$!
  (kubelet_loop server) </dev/null >/dev/null 2>&1 &
  kubelet=$!
  trap 'kill -TERM "$etcd" "$kubelet" 2>/dev/null || true; wait "$etcd" || true; wait "$kubelet" || true; exit 0' TERM INT
  st=0
  wait "$etcd" || st=$?
  kill -TERM "$kubelet" 2>/dev/null || true
  wait "$kubelet" || true
  exit "$st"
}
notfound() { echo "Error from server (NotFound): nodes \\"$1\\" not found" >&2; exit 1; }
stored_node() {
  v=$(kvget "/registry/minions/$1") || die "no etcd member answers: is K3s running on a server?"
  [ -n "$v" ] || notfound "$1"
  printf '%s' "$v"
}
# kubectl cordon / uncordon, in kubectl's words
schedulable() { # name 1(cordon)|0(uncordon)
  prev=$(stored_node "$1")
  was=0
  case "$prev" in *'"unschedulable":true'*) was=1 ;; esac
  if [ "$2" = 1 ]; then verb=cordoned spec='{"unschedulable":true}'; else verb=uncordoned spec='{}'; fi
  if [ "$was" = "$2" ]; then echo "node/$1 already $verb"; return 0; fi
  kvput "/registry/minions/$1" "$(printf '%s' "$prev" | sed "s/\\"spec\\":{[^}]*}/\\"spec\\":$spec/")"
  echo "node/$1 $verb"
}
# kubectl get node NAME -o json: Ready while the Lease was renewed within 50 s (the node
# lifecycle controller's --node-monitor-grace-period), Unknown after that, as Kubernetes reports it
node_json() {
  v=$(stored_node "$1")
  field() { printf '%s' "$v" | sed -n "s/.*\\"$1\\":\\"\\\\([^\\"]*\\\\)\\".*/\\\\1/p" | head -n 1; }
  created=$(field creationTimestamp)
  kubelet=$(field kubeletVersion)
  addr=$(printf '%s' "$v" | sed -n 's/.*"addresses":\\[{"address":"\\([^"]*\\)".*/\\1/p')
  renewed=$(kvget "/registry/leases/kube-node-lease/$1" | sed -n 's/.*"renewTime":"\\([^"]*\\)".*/\\1/p' || true)
  at=0
  if [ -n "$renewed" ]; then at=$(date -d "$renewed" +%s 2>/dev/null || echo 0); fi
  if [ $(( $(date +%s) - at )) -le 50 ]; then
    status=True reason=KubeletReady message="kubelet is posting ready status"
  else
    status=Unknown reason=NodeStatusUnknown message="Kubelet stopped posting node status."
  fi
  beat=\${renewed%.*}
  beat=\${beat:-$created}
  beat=\${beat%Z}Z
  printf '{\\n    "apiVersion": "v1",\\n    "kind": "Node",\\n    "metadata": {\\n        "creationTimestamp": "%s",\\n        "labels": {\\n' "$created"
  printf '            "beta.kubernetes.io/arch": "amd64",\\n            "beta.kubernetes.io/os": "linux",\\n            "kubernetes.io/arch": "amd64",\\n            "kubernetes.io/hostname": "%s",\\n            "kubernetes.io/os": "linux"' "$1"
  case "$v" in *node-role.kubernetes.io/control-plane*)
    printf ',\\n            "node-role.kubernetes.io/control-plane": "true",\\n            "node-role.kubernetes.io/etcd": "true",\\n            "node-role.kubernetes.io/master": "true"' ;;
  esac
  printf '\\n        },\\n        "name": "%s"\\n    },\\n' "$1"
  case "$v" in
  *'"unschedulable":true'*)
    printf '    "spec": {\\n        "taints": [\\n            {\\n                "effect": "NoSchedule",\\n                "key": "node.kubernetes.io/unschedulable"\\n            }\\n        ],\\n        "unschedulable": true\\n    },\\n' ;;
  *) printf '    "spec": {},\\n' ;;
  esac
  printf '    "status": {\\n        "addresses": [\\n            {\\n                "address": "%s",\\n                "type": "InternalIP"\\n            },\\n            {\\n                "address": "%s",\\n                "type": "Hostname"\\n            }\\n        ],\\n' "$addr" "$1"
  printf '        "conditions": [\\n            {\\n                "lastHeartbeatTime": "%s",\\n                "lastTransitionTime": "%s",\\n                "message": "%s",\\n                "reason": "%s",\\n                "status": "%s",\\n                "type": "Ready"\\n            }\\n        ],\\n' "$beat" "$created" "$message" "$reason" "$status"
  printf '        "nodeInfo": {\\n            "architecture": "amd64",\\n            "kubeletVersion": "%s",\\n            "operatingSystem": "linux"\\n        }\\n    }\\n}\\n' "$kubelet"
}

case "\${1:-}" in
--version|-v|version)
  echo "k3s version $VERSION (fmc-lab-stand-in)"
  ;;
server)
  shift
  . "$LIB/standin.env"
  [ -f "$CONFIG" ] || die "no $CONFIG"
  reset=
  restore=
  server_url=$(cfg server || true)
  while [ $# -gt 0 ]; do
    case "$1" in
      --cluster-reset) reset=1 ;;
      --cluster-reset-restore-path=*) restore=\${1#*=} ;;
      --cluster-reset-restore-path) restore=\${2:-}; shift ;;
      # on the command line after config.yaml's values, so it wins (k3s-io/k3s pkg/configfilearg)
      --server=*) server_url=\${1#*=} ;;
      --server|-s) server_url=\${2:-}; shift ;;
      --etcd-s3=false) ;;
      *) die "server: the stand-in does not know $1" ;;
    esac
    shift
  done
  mkdir -p /var/lib/rancher/k3s/server/tls
  mkdir -p "$DB" && chmod 0700 "$DB"
  [ -s /var/lib/rancher/k3s/server/tls/server-ca.crt ] || cp "$LIB/cluster-ca.crt" /var/lib/rancher/k3s/server/tls/server-ca.crt
  # K3s makes its TLS files and admin kubeconfig at its first start; the stand-in puts back
  # the lab's (after fmc reset removed them, as K3s's uninstall does)
  if [ ! -s "$TLS/server-ca.crt" ]; then mkdir -p "$TLS" && cp -p "$LIB/tls-etcd/"* "$TLS/"; fi
  if [ ! -s /etc/rancher/k3s/k3s.yaml ]; then install -D -m 0600 "$LIB/k3s.yaml" /etc/rancher/k3s/k3s.yaml; fi
  set -- --name="$NAME" --data-dir="$DATA" \\
    --listen-client-urls="https://127.0.0.1:2379,https://$ADDRESS:2379" --advertise-client-urls="https://$ADDRESS:2379" \\
    --listen-peer-urls="https://$ADDRESS:2380" --initial-advertise-peer-urls="https://$ADDRESS:2380" \\
    --client-cert-auth --trusted-ca-file="$TLS/server-ca.crt" --cert-file="$TLS/server-client.crt" --key-file="$TLS/server-client.key" \\
    --peer-client-cert-auth --peer-trusted-ca-file="$TLS/peer-ca.crt" --peer-cert-file="$TLS/peer-server-client.crt" --peer-key-file="$TLS/peer-server-client.key"
  if [ -n "$reset" ]; then
    # K3s's cluster reset with a restore (pkg/etcd/etcd.go Reset/Restore): the current data
    # goes to db/etcd-old-<time>, the snapshot (its hash checked) becomes a one-member cluster
    # of this node, etcd runs until it is healthy, then K3s says so and exits 0; a reset-flag
    # stays until a normal start
    [ -z "$server_url" ] || die "cannot perform cluster-reset while server URL is set - remove server from configuration before resetting"
    [ -n "$restore" ] || die "--cluster-reset without --cluster-reset-restore-path: the stand-in only restores snapshots"
    [ -e "$restore" ] || die "etcd: snapshot path does not exist: $restore"
    [ -f "$restore" ] || die "etcd: snapshot path must be a file, not a directory: $restore"
    if ctl --endpoints=https://127.0.0.1:2379 endpoint health >/dev/null 2>&1; then die "etcd already answers on 127.0.0.1:2379: stop k3s first"; fi
    new="$DB/etcd-restore-$$"
    rm -rf "$new"
    if ! ctl snapshot restore "$restore" --name="$NAME" --data-dir="$new" --initial-cluster="$NAME=https://$ADDRESS:2380" \\
      --initial-cluster-token="$CLUSTER_TOKEN" --initial-advertise-peer-urls="https://$ADDRESS:2380" >&2; then
      rm -rf "$new"
      die "etcd: restoring $restore failed (etcdctl snapshot restore)"
    fi
    if [ -d "$DATA" ]; then
      old="$DB/etcd-old-$(date +%s)"
      mv "$DATA" "$old"
      echo "time=\\"$(date -u +%FT%TZ)\\" level=info msg=\\"Moved the current etcd data to $old\\"" >&2
    fi
    mv "$new" "$DATA"
    chmod 0700 "$DATA"
    : > "$DB/reset-flag"
    "$LIB/etcd" "$@" >"$DB/reset-etcd.log" 2>&1 &
    pid=$!
    i=0
    until ctl --endpoints=https://127.0.0.1:2379 endpoint health >/dev/null 2>&1; do
      i=$((i + 1))
      if [ "$i" -ge 60 ] || ! kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        die "the restored etcd member did not become healthy in 60 s; see $DB/reset-etcd.log"
      fi
      sleep 1
    done
    kill "$pid"
    wait "$pid" || true
    echo "time=\\"$(date -u +%FT%TZ)\\" level=info msg=\\"Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete \\\${datadir}/server/db on each peer etcd server and rejoin the nodes\\"" >&2
    exit 0
  fi
  if [ -d "$DATA/member" ]; then
    # a normal start clears the reset flag (pkg/cluster/cluster.go)
    rm -f "$DB/reset-flag"
    run_etcd "$@"
  fi
  if [ "$(cfg cluster-init)" = true ]; then
    run_etcd "$@" --initial-cluster="$NAME=https://$ADDRESS:2380" --initial-cluster-state=new --initial-cluster-token="$CLUSTER_TOKEN"
  fi
  [ -n "$server_url" ] || die "$CONFIG has neither cluster-init nor server: nothing to start or join"
  # K3s keeps trying to join; so does the stand-in (etcd refuses a member add until every
  # member has been connected for 5 s: "not healthy for reconfigure")
  tries=0
  while [ "$tries" -lt 90 ]; do
  tries=$((tries + 1))
  for p in $PEERS; do
    [ "$p" = "$ADDRESS" ] && continue
    if out=$(ctl --endpoints="https://$p:2379" member add "$NAME" --peer-urls="https://$ADDRESS:2380" 2>&1); then
      run_etcd "$@" --initial-cluster="$(echo "$out" | sed -n 's/^ETCD_INITIAL_CLUSTER="\\(.*\\)"$/\\1/p')" --initial-cluster-state=existing
    fi
    # added by an earlier start that never came up: take the member list as it is
    if list=$(ctl --endpoints="https://$p:2379" member list 2>/dev/null) && echo "$list" | grep -q "https://$ADDRESS:2380"; then
      run_etcd "$@" --initial-cluster="$(echo "$list" | awk -F', ' -v me="$NAME" '{ n = $3; if (n == "") n = me; printf "%s%s=%s", (c++ ? "," : ""), n, $4 }')" --initial-cluster-state=existing
    fi
  done
  sleep 2
  done
  die "no etcd member among $PEERS let $NAME join in 180 s (is the first server up?)"
  ;;
agent)
  . "$LIB/standin.env"
  token=$(cfg token)
  case "$token" in K10*::*) ;; *) die "the token is not in K3s's secure format (K10<CA hash>::…): not joining without checking the server" ;; esac
  hash=\${token#K10}; hash=\${hash%%::*}; cred=\${token#*::}
  ca=$(sha256sum "$LIB/cluster-ca.crt" | cut -d ' ' -f 1)
  [ "$hash" = "$ca" ] || die "the cluster CA's SHA-256 is $ca, the token pins $hash: not joining"
  id=\${cred%%.*}; secret=\${cred#*.}
  echo "$cred" | grep -Eq '^[a-z0-9]{6}\\.[a-z0-9]{16}$' || die "the credentials are not a bootstrap token"
  key=$(printf '/registry/secrets/kube-system/bootstrap-token-%s' "$id" | base64 -w0)
  body=
  for p in $PEERS; do
    if r=$(curl -sf --max-time 5 --cacert "$LIB/etcd-ca.crt" --cert "$LIB/etcd-client.crt" --key "$LIB/etcd-client.key" -X POST -d "{\\"key\\":\\"$key\\"}" "https://$p:2379/v3/kv/range"); then
      body=$(echo "$r" | sed -n 's/.*"value":"\\([^"]*\\)".*/\\1/p' | base64 -d 2>/dev/null || true); break
    fi
  done
  [ -n "$body" ] || die "bootstrap token $id is not in the cluster (or no server answers)"
  echo "$body" | grep -q "\\"token-secret\\":\\"$secret\\"" || die "bootstrap token $id: wrong secret"
  exp=$(echo "$body" | sed -n 's/.*"expiration":"\\([^"]*\\)".*/\\1/p')
  [ -n "$exp" ] && [ "$(date -d "$exp" +%s)" -gt "$(date +%s)" ] || die "bootstrap token $id expired at $exp"
  mkdir -p /var/lib/rancher/k3s/agent /etc/rancher/node
  [ -s /etc/rancher/node/password ] || (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /etc/rancher/node/password)
  echo "fmc lab stand-in: admitted with bootstrap token $id at $(date -u +%FT%TZ)" > /var/lib/rancher/k3s/agent/client-kubelet.crt
  systemd-notify --ready 2>/dev/null || true
  kubelet_loop agent
  ;;
kubectl)
  shift
  [ -f "$LIB/standin.env" ] && . "$LIB/standin.env"
  case "\${1:-}" in
  cordon|uncordon)
    [ $# -eq 2 ] || die "kubectl $1: one node name"
    if [ "$1" = cordon ]; then schedulable "$2" 1; else schedulable "$2" 0; fi
    ;;
  drain)
    # no pods run in the lab: nothing to evict, so a drain is its cordon
    shift
    node=
    while [ $# -gt 0 ]; do
      case "$1" in
        --timeout|--grace-period|--pod-selector|--selector|-l) shift ;;
        -*) ;;
        *) [ -z "$node" ] || die "kubectl drain: one node at a time in the lab"; node=$1 ;;
      esac
      shift
    done
    [ -n "$node" ] || die "kubectl drain: which node?"
    schedulable "$node" 1
    echo "node/$node drained"
    ;;
  delete)
    [ "\${2:-}" = node ] && [ $# -eq 3 ] || die "kubectl $*: the stand-in deletes nodes only (kubectl delete node NAME)"
    stored_node "$3" >/dev/null
    kvdel "/registry/minions/$3"
    kvdel "/registry/leases/kube-node-lease/$3"
    echo "node \\"$3\\" deleted"
    ;;
  *)
    case "$*" in
    "get --raw=/readyz") ctl --endpoints=https://127.0.0.1:2379 endpoint health >/dev/null 2>&1 || die "etcd on this server is not healthy"; echo ok ;;
    "get node "*" -o json"|"get nodes "*" -o json"|"get node "*" -ojson"|"get nodes "*" -ojson")
      [ $# -le 5 ] || die "kubectl get node: one node at a time in the lab"
      node_json "$3"
      ;;
    "apply -f -")
      body=$(cat)
      name=$(echo "$body" | sed -n 's/.*"metadata":{"name":"\\([a-z0-9.-]*\\)","namespace":"\\([a-z0-9-]*\\)".*/\\2\\/\\1/p')
      [ -n "$name" ] || die "kubectl apply: the stand-in takes one JSON object with metadata.name and .namespace"
      printf '%s' "$body" | ctl --endpoints=https://127.0.0.1:2379 put "/registry/secrets/$name" >/dev/null
      echo "secret/\${name#*/} configured"
      ;;
    *) die "kubectl $* is not available in the lab (no API server runs)" ;;
    esac
    ;;
  esac
  ;;
etcd-snapshot)
  [ "\${2:-}" = save ] || die "only etcd-snapshot save"
  shift 2
  name=on-demand
  dir=${K3S_SNAPSHOT_DIR}
  while [ $# -gt 0 ]; do
    case "$1" in
      --name) name=$2; shift 2 ;;
      --name=*) name=\${1#--name=}; shift ;;
      --dir|--etcd-snapshot-dir) dir=$2; shift 2 ;;
      *) die "etcd-snapshot save: unknown flag $1" ;;
    esac
  done
  mkdir -p "$dir" && chmod 0700 "$dir"
  file="$dir/$name-$(hostname)-$(date +%s)"
  ctl --endpoints=https://127.0.0.1:2379 snapshot save "$file" >/dev/null
  echo "Snapshot $(basename "$file") saved to $file"
  ;;
*)
  die "k3s $* is not available in the lab (K3s can't run here)"
  ;;
esac
`;
}
