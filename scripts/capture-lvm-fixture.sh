#!/usr/bin/env bash
# Capture real LVM / lsblk / /proc/mounts output for the engine's unit tests.
#
# Builds a minimal Debian bookworm guest (debootstrap minbase + linux-image-amd64, lvm2,
# util-linux, e2fsprogs, xfsprogs, udev), boots it under QEMU software emulation (no KVM,
# no network) with two extra disks, and records in the guest, at four states, the exact
# output of the commands the engine reads its storage facts with:
#
#   lsblk -J -b -p -o NAME,SIZE,TYPE,FSTYPE
#   vgs --noheadings --units b --nosuffix -o vg_name,vg_size,vg_free
#   lvs --noheadings --units b --nosuffix -o vg_name,lv_name,lv_size,lv_dm_path
#   cat /proc/mounts
#
# States (disks: vda root, vdb 8 GiB sparse, vdc 1 GiB, vdd output; -nodefaults, so no
# QEMU floppy or CD-ROM shows up in lsblk):
#   fresh              vdb empty; vdc formatted ext4 (no LVM)
#   lvs-created        PV/VG "data" on vdb; postgres_lv 1G, shared-lv 1G, longhorn_lv 100%FREE
#   formatted-mounted  ext4 on postgres_lv and longhorn_lv, xfs on shared-lv, all mounted
#   grown              vdb grown to 9 GiB by QEMU (block_resize), pvresize, then
#                      lvextend -L +512M data/postgres_lv and an online resize2fs.
#                      (longhorn_lv took 100%FREE, so the VG has no free extent to grow
#                      into until its disk grows: the common "cloud volume enlarged" case.)
#
# Writes test/fixtures/lvm/<state>.txt (sections @lsblk @vgs @lvs @mounts, raw stdout).
# The guest's root (debootstrap) is cached in $FMC_LVM_CACHE (/var/tmp/fmc-lvm-capture);
# delete that directory to rebuild it. Needs root, debootstrap, qemu-system-x86 and a
# Debian bookworm mirror in /etc/apt/sources.list* (or FMC_DEBIAN_MIRROR).
#
# Environment: FMC_LVM_CACHE, FMC_DEBIAN_MIRROR, FMC_LVM_OUT (fixture directory),
# FMC_LVM_BOOT_TIMEOUT (s, default 900), FMC_LVM_TOTAL_TIMEOUT (s, default 3000).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
OUT_DIR=${FMC_LVM_OUT:-$REPO/test/fixtures/lvm}
CACHE=${FMC_LVM_CACHE:-/var/tmp/fmc-lvm-capture}
BOOT_TIMEOUT=${FMC_LVM_BOOT_TIMEOUT:-900}
TOTAL_TIMEOUT=${FMC_LVM_TOTAL_TIMEOUT:-3000}
SUITE=bookworm
PACKAGES=linux-image-amd64,lvm2,util-linux,e2fsprogs,xfsprogs,udev,kmod,initramfs-tools
STATES=(fresh lvs-created formatted-mounted grown)

# The whole run is bounded: re-exec under timeout(1), which signals our process group.
if [ -z "${FMC_LVM_UNDER_TIMEOUT:-}" ]; then
  export FMC_LVM_UNDER_TIMEOUT=1
  exec timeout --kill-after=30 "$TOTAL_TIMEOUT" bash "$SELF" "$@"
fi

log() { printf '[capture-lvm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
for c in debootstrap qemu-system-x86_64 mkfs.ext4 tar timeout flock mkfifo truncate; do
  command -v "$c" >/dev/null || die "missing $c (apt-get install debootstrap qemu-system-x86 e2fsprogs)"
done

# The first Debian bookworm mirror in apt's sources (same rule as debianMirror() in src/lab/rootfs.ts).
debian_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    [ -f "$f" ] || continue
    awk -v RS= -v suite="$SUITE" '{
        uri = ""; suites = ""; n = split($0, L, "\n")
        for (i = 1; i <= n; i++) {
          if (L[i] ~ /^URIs:/) { split(L[i], a, /[ \t]+/); uri = a[2] }
          if (L[i] ~ /^Suites:/) suites = " " substr(L[i], 8) " "
        }
        if (uri ~ /\/debian\/?$/ && suites ~ ("[ \t]" suite "[ \t]")) print uri
      }' "$f"
    awk -v suite="$SUITE" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
        if ($i ~ /\/debian\/?$/ && $(i + 1) == suite) print $i
      }' "$f"
  done | sed -n 1p
}

WORK=""
BUILD=""
QEMU_PID=""
DRAIN_PID=""
cleanup() {
  local rc=$?
  set +e
  [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
  [ -n "$DRAIN_PID" ] && kill "$DRAIN_PID" 2>/dev/null
  if [ -n "$BUILD" ] && [ -d "$BUILD" ]; then
    # an interrupted debootstrap may leave proc/sys mounted inside the target
    awk -v p="$BUILD/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
    rm -rf --one-file-system "$BUILD"
  fi
  [ -n "$WORK" ] && rm -rf --one-file-system "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -w 600 9 || die "another capture holds $CACHE/lock"

# ---------------------------------------------------------------- guest build (cached)
KEY=$(printf '%s %s v1' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
GUEST=$CACHE/guest-$KEY
t0=$(date +%s)
if [ ! -f "$GUEST/.ready" ]; then
  MIRROR=${FMC_DEBIAN_MIRROR:-$(debian_mirror)}
  [ -n "$MIRROR" ] || die "no Debian $SUITE mirror in /etc/apt/sources.list* (set FMC_DEBIAN_MIRROR)"
  rm -rf --one-file-system "$CACHE"/build.* 2>/dev/null || true
  BUILD=$(mktemp -d "$CACHE/build.XXXXXX")
  log "building the guest root: debootstrap $SUITE from $MIRROR (once; cached in $GUEST)"
  if ! timeout 1800 debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$BUILD/root" "$MIRROR" >"$BUILD/debootstrap.log" 2>&1; then
    tail -n 20 "$BUILD/debootstrap.log" >&2
    die "debootstrap failed"
  fi
  kernel=$(ls "$BUILD"/root/boot/vmlinuz-* | sort -V | tail -n1)
  initrd=$(ls "$BUILD"/root/boot/initrd.img-* | sort -V | tail -n1)
  [ -f "$kernel" ] && [ -f "$initrd" ] || die "the guest has no kernel or initramfs in /boot"
  cp "$kernel" "$BUILD/vmlinuz"
  cp "$initrd" "$BUILD/initrd.img"
  rm -f "$BUILD"/root/var/cache/apt/archives/*.deb
  touch "$BUILD/.ready"
  rm -rf --one-file-system "$GUEST"
  mv "$BUILD" "$GUEST"
  BUILD=""
fi
t1=$(date +%s)

# ---------------------------------------------------------------- the guest's PID 1
# Written into the cached root on each run (we hold the cache lock), so editing this
# script needs no rebuild.
cat >"$GUEST/root/fmc-capture.sh" <<'GUEST_EOF'
#!/bin/bash
# PID 1 of the LVM capture VM (installed by scripts/capture-lvm-fixture.sh).
set -Eeuo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C LANG=C
OUT=/run/fmc-out

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs /run
mkdir -p "$OUT" /run/lock

finish() {
  local rc=$1
  set +e
  trap - EXIT
  echo "$rc" >"$OUT/status"
  # vdd is the 16 MiB output disk; the host reads a tar from it
  if [ "$(blockdev --getsize64 /dev/vdd)" = 16777216 ]; then
    tar -C "$OUT" -cf /dev/vdd . && sync && blockdev --flushbufs /dev/vdd
  fi
  echo "FMC-GUEST-DONE status=$rc"
  echo o >/proc/sysrq-trigger
  sleep 120
}
trap 'finish $?' EXIT
echo "FMC-GUEST-START"
set -x

# udev as on a real host: device links, FSTYPE in the udev database, LVM udev sync
/lib/systemd/systemd-udevd --daemon
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=60
modprobe dm_mod
modprobe ext4
modprobe xfs

run_captured() { # name command...: stdout, stderr and exit code into files
  local name=$1 rc=0
  shift
  "$@" >"$D/$name.out" 2>"$D/$name.err" || rc=$?
  echo "$rc" >"$D/$name.rc"
}
capture() {
  D=$OUT/$1
  mkdir -p "$D"
  udevadm settle --timeout=60
  run_captured lsblk lsblk -J -b -p -o NAME,SIZE,TYPE,FSTYPE
  run_captured vgs vgs --noheadings --units b --nosuffix -o vg_name,vg_size,vg_free
  run_captured lvs lvs --noheadings --units b --nosuffix -o vg_name,lv_name,lv_size,lv_dm_path
  run_captured mounts cat /proc/mounts
  echo "FMC-CAPTURED $1"
}

{
  echo "kernel_release=$(uname -r)"
  echo "kernel_version=$(uname -v)"
  echo "lvm=$(lvm version | sed -n 's/^ *LVM version: *//p')"
  echo "util_linux=$(lsblk --version)"
  dpkg-query -W -f 'pkg ${Package}=${Version}\n' "linux-image-$(uname -r)" lvm2 dmsetup util-linux e2fsprogs xfsprogs udev
} >"$OUT/versions"

# fresh: vdb empty, vdc holds ext4 and no LVM
mkfs.ext4 -q /dev/vdc
capture fresh

pvcreate /dev/vdb
vgcreate data /dev/vdb
lvcreate -n postgres_lv -L 1G data
lvcreate -n shared-lv -L 1G data
lvcreate -n longhorn_lv -l 100%FREE data
capture lvs-created

mkfs.ext4 -q /dev/data/postgres_lv
mkfs.ext4 -q /dev/data/longhorn_lv
mkfs.xfs -q /dev/data/shared-lv
mkdir -p /srv/nfs/postgresql /srv/nfs/shared /mnt/longhorn-disk
mount /dev/data/postgres_lv /srv/nfs/postgresql
mount /dev/data/shared-lv /srv/nfs/shared
mount /dev/data/longhorn_lv /mnt/longhorn-disk
capture formatted-mounted

# The VG is full (longhorn_lv took 100%FREE): ask the host to grow vdb, then grow online.
old=$(cat /sys/block/vdb/size)
echo "FMC-REQUEST-RESIZE vdb"
for _ in $(seq 1 240); do
  [ "$(cat /sys/block/vdb/size)" != "$old" ] && break
  sleep 0.5
done
[ "$(cat /sys/block/vdb/size)" != "$old" ]
pvresize /dev/vdb
lvextend -L +512M data/postgres_lv
resize2fs /dev/data/postgres_lv
capture grown
GUEST_EOF
chmod 755 "$GUEST/root/fmc-capture.sh"

# ---------------------------------------------------------------- disks
WORK=$(mktemp -d /var/tmp/fmc-lvm-capture-run.XXXXXX)
size=$(du -sm "$GUEST/root" | cut -f1)
mkfs.ext4 -q -F -L fmcroot -d "$GUEST/root" "$WORK/root.img" "$((size + 512))M" >/dev/null
truncate -s 8G "$WORK/vdb.img"
truncate -s 1G "$WORK/vdc.img"
truncate -s 16M "$WORK/out.img"
mkfifo "$WORK/mon.in" "$WORK/mon.out"
t2=$(date +%s)

# ---------------------------------------------------------------- boot
log "booting the guest (QEMU software emulation, no network; timeout ${BOOT_TIMEOUT}s)"
cat "$WORK/mon.out" >"$WORK/monitor.log" &
DRAIN_PID=$!
timeout --kill-after=10 "$BOOT_TIMEOUT" qemu-system-x86_64 \
  -accel tcg -m 1024 -smp 2 -nographic -nodefaults -monitor none -no-reboot \
  -nic none \
  -serial "file:$WORK/console.log" \
  -chardev "pipe,id=mon0,path=$WORK/mon" -mon chardev=mon0,mode=readline \
  -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 init=/fmc-capture.sh panic=-1 quiet" \
  -drive "file=$WORK/root.img,format=raw,if=virtio,id=vda" \
  -drive "file=$WORK/vdb.img,format=raw,if=virtio,id=vdb" \
  -drive "file=$WORK/vdc.img,format=raw,if=virtio,id=vdc" \
  -drive "file=$WORK/out.img,format=raw,if=virtio,id=vdd" \
  </dev/null >"$WORK/qemu.log" 2>&1 &
QEMU_PID=$!
resized=0
while kill -0 "$QEMU_PID" 2>/dev/null; do
  if [ "$resized" = 0 ] && grep -aq '^FMC-REQUEST-RESIZE' "$WORK/console.log" 2>/dev/null; then
    log "guest asks for a larger vdb: block_resize vdb 9G"
    echo "block_resize vdb 9G" >"$WORK/mon.in"
    resized=1
  fi
  sleep 0.5
done
qrc=0
wait "$QEMU_PID" || qrc=$?
QEMU_PID=""
t3=$(date +%s)
cp "$WORK/console.log" "$CACHE/last-console.log" 2>/dev/null || true

mkdir "$WORK/out"
if [ "$qrc" != 0 ] || ! tar -C "$WORK/out" -xf "$WORK/out.img" 2>/dev/null || [ "$(cat "$WORK/out/status" 2>/dev/null)" != 0 ]; then
  cat "$WORK/qemu.log" >&2
  tail -n 40 "$WORK/console.log" >&2
  die "the guest run failed (qemu exit $qrc; console log kept in $CACHE/last-console.log)"
fi

# ---------------------------------------------------------------- fixtures
kv() { sed -n "s/^$1=//p" "$WORK/out/versions"; }
kernel_pkg=$(kv kernel_version | sed -n 's/.* Debian \([^ ]*\) .*/\1/p')
lvm_version=$(kv lvm | cut -d' ' -f1)
ul_version=$(kv util_linux | sed -n 's/.*util-linux \([^ ]*\).*/\1/p')
header="# captured by scripts/capture-lvm-fixture.sh on $(date -u +%Y-%m-%d): Linux $(kv kernel_release) (Debian $kernel_pkg), lvm $lvm_version, util-linux $ul_version, QEMU software emulation"

mkdir -p "$WORK/fixtures"
for st in "${STATES[@]}"; do
  d=$WORK/out/$st
  {
    echo "$header"
    for sec in lsblk vgs lvs mounts; do
      [ "$(cat "$d/$sec.rc")" = 0 ] || die "$st: $sec exited $(cat "$d/$sec.rc"): $(cat "$d/$sec.err")"
      if [ -s "$d/$sec.out" ] && [ "$(tail -c1 "$d/$sec.out" | od -An -c | tr -d ' ')" != '\n' ]; then
        die "$st: $sec output does not end with a newline; the section format cannot hold it unchanged"
      fi
      echo "@$sec"
      cat "$d/$sec.out"
    done
  } >"$WORK/fixtures/$st.txt"
  for sec in lsblk vgs lvs mounts; do
    [ -s "$d/$sec.err" ] && log "$st: $sec stderr: $(tr '\n' ' ' <"$d/$sec.err")"
  done
done
mkdir -p "$OUT_DIR"
for st in "${STATES[@]}"; do cp "$WORK/fixtures/$st.txt" "$OUT_DIR/$st.txt"; done

log "guest: $(kv kernel_release) / lvm $(kv lvm) / $(kv util_linux)"
log "guest packages: $(sed -n 's/^pkg //p' "$WORK/out/versions" | tr '\n' ' ')"
log "build $((t1 - t0))s (cached in $GUEST), disk images $((t2 - t1))s, boot+capture $((t3 - t2))s"
log "wrote ${STATES[*]/%/.txt} in $OUT_DIR"
