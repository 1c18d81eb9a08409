#!/usr/bin/env bash
# Build (once) the Debian bookworm root filesystem the lab's systemd test hosts boot with systemd-nspawn.
#
#   bash lab/rootfs.sh        prints the path of the ready root filesystem (last line of stdout)
#
# Cached under ${KUBEGATE_CACHE:-~/.cache/kubegate}/rootfs-<hash of the recipe>: rebuilt only when the recipe below
# changes. Built in a temporary directory and renamed into place (atomic), under a lock (concurrent callers wait).
# Uses the Debian mirror this machine's apt already uses. Per-host copies are made by lab/kglab/hosts.py.
set -euo pipefail

SUITE=bookworm
VARIANT=minbase
PACKAGES=systemd,systemd-sysv,dbus,openssh-server,openssh-client,python3,iproute2,nginx-light,sudo,curl,ca-certificates,procps

CACHE="${KUBEGATE_CACHE:-$HOME/.cache/kubegate}"

mirror() {
  # The first Debian archive URI apt is configured with (deb822 .sources or one-line .list), else deb.debian.org.
  local uri=""
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    uri=$(awk -v suite="$SUITE" '
      /^Types:/ {t=$0} /^URIs:/ {u=$2} /^Suites:/ {s=$0}
      /^$/ { if (t ~ /deb( |$)/ && s ~ (" " suite "( |$)") && u !~ /security/) {print u; exit} t=u=s="" }
      END { if (t ~ /deb( |$)/ && s ~ (" " suite "( |$)") && u !~ /security/) print u }' "$f" | head -n1)
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -r "$f" ] || continue
      uri=$(awk -v suite="$SUITE" '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i==suite) {
              for (j=2;j<i;j++) if ($j !~ /^\[/) {print $j; exit} } }' "$f" | head -n1)
      [ -n "$uri" ] && break
    done
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Post-install configuration common to every host (per-host keys and settings are written by hosts.py).
customize() {
  local root="$1"
  # No host keys in the shared image: each host gets its own, generated on the controller and pinned.
  rm -f "$root"/etc/ssh/ssh_host_*
  # The image's nginx must not start by itself: a host in the root network namespace would take port 80.
  chroot "$root" systemctl disable nginx.service >/dev/null 2>&1 || true
  chroot "$root" systemctl mask nginx.service >/dev/null 2>&1 || true
  # Things that make no sense in a container booted for tests.
  for unit in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
              getty@tty1.service console-getty.service; do
    chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
  done
  # systemd generates a fresh machine id at first boot of each copy.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  printf 'kglab\n' >"$root/etc/hostname"
  apt-get -o RootDir="$root" clean >/dev/null 2>&1 || rm -rf "$root"/var/cache/apt/archives/*.deb
  rm -rf "$root"/var/lib/apt/lists/*
}

MIRROR="$(mirror)"
RECIPE="suite=$SUITE variant=$VARIANT packages=$PACKAGES mirror=$MIRROR
$(declare -f customize)"
HASH="$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)"
DEST="$CACHE/rootfs-$HASH"

mkdir -p "$CACHE"
exec 9>"$CACHE/rootfs.lock"
flock 9
if [ -f "$DEST/.kglab-rootfs" ]; then
  echo "$DEST"
  exit 0
fi
for tool in debootstrap chroot; do
  command -v "$tool" >/dev/null || { echo "rootfs: $tool missing; run \`make deps\` (lab/deps.sh)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "rootfs: debootstrap needs root" >&2; exit 1; }
TMP="$(mktemp -d "$CACHE/rootfs-$HASH.tmp.XXXXXX")"
trap 'rm -rf --one-file-system "$TMP"' EXIT
echo "[rootfs] debootstrap $SUITE ($VARIANT) from $MIRROR into $TMP" >&2
started=$SECONDS
if ! debootstrap --variant="$VARIANT" --include="$PACKAGES" "$SUITE" "$TMP/root" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
  tail -n 30 "$TMP/debootstrap.log" >&2
  echo "rootfs: debootstrap failed (full log above was $TMP/debootstrap.log)" >&2
  exit 1
fi
customize "$TMP/root"
printf '%s\n' "$RECIPE" >"$TMP/root/.kglab-rootfs"
# Remove older images of other recipes (they are never used again), then publish this one atomically.
for old in "$CACHE"/rootfs-*; do
  case "$old" in "$DEST"|"$TMP"|*.lock|*.tmp.*) continue ;; esac
  [ -d "$old" ] && rm -rf --one-file-system "$old"
done
mv "$TMP/root" "$DEST"
echo "[rootfs] built $DEST in $((SECONDS - started)) s" >&2
echo "$DEST"
