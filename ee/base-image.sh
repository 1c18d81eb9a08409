#!/usr/bin/env bash
# Build (once) the local base image of the execution environment: Debian trixie (Python 3.13) from a debootstrap
# root filesystem, imported with `podman import`. No container registry is reachable from here, so ansible-builder
# (execution-environment.yml, images.base_image) starts FROM this image instead of a pulled one.
#
#   bash ee/base-image.sh        prints the image name (last line of stdout): localhost/kubegate-ee-base:trixie
#
# execution-environment.yml names localhost/kubegate-ee-base:trixie; the image is also tagged :trixie-<recipe hash>,
# which is how a later run knows that the cached image matches the recipe.
#
# Why trixie: ansible-core 2.21 needs Python >= 3.12 on the controller; bookworm ships 3.11 (ansible-core 2.19 at
# most), trixie ships 3.13.
# Cached as a podman image tagged with a hash of the recipe below: rebuilt only when the recipe (or the mirror) changes.
# Uses the Debian mirror this machine's apt already uses and trusts the local CAs this machine trusts
# (/usr/local/share/ca-certificates), so that pip and apt inside `ansible-builder build` reach PyPI and Debian through
# the same path as the host does.
#
# The image contains only what ansible-builder needs before its own steps: python3, pip (Debian's; ansible-builder
# sets PIP_BREAK_SYSTEM_PACKAGES=1), CA certificates, and /usr/local/bin/kg-pkgmgr, a small dnf-compatible front end
# for apt-get: ansible-builder's scripts call `$PKGMGR install -y PKG...` and `$PKGMGR clean all`
# (execution-environment.yml sets options.package_manager_path to it). The collection's system packages (bindep.txt:
# nginx, openssh-client) are installed by ansible-builder itself through that front end.
set -euo pipefail

SUITE=trixie
VARIANT=minbase
PACKAGES=python3,python3-pip,ca-certificates
ENGINE="${KUBEGATE_EE_ENGINE:-podman}"
CACHE="${KUBEGATE_CACHE:-$HOME/.cache/kubegate}"

die() { printf 'ee-base: %s\n' "$*" >&2; exit 1; }

for tool in debootstrap chroot "$ENGINE"; do
  command -v "$tool" >/dev/null || die "$tool missing: run \`make ee-deps\` (apt-get install debootstrap podman)"
done
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"

# The first Debian archive apt is configured with for this machine's own suite (the same mirror serves every suite).
HOST_SUITE="$(. /etc/os-release; echo "${VERSION_CODENAME:-bookworm}")"
MIRROR="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
          awk -v s="$HOST_SUITE" '$2 == s {print $1; exit}')"
MIRROR="${MIRROR:-http://deb.debian.org/debian/}"

# kg-pkgmgr: what ansible-builder's assemble / install-from-bindep scripts expect of dnf, done with apt-get.
read -r -d '' PKGMGR_SCRIPT <<'SH' || true
#!/bin/sh
# kubegate EE base: dnf-style front end for apt-get, for ansible-builder's scripts ($PKGMGR install -y PKG..., $PKGMGR clean all).
set -eu
cmd="${1:-}"; [ $# -gt 0 ] && shift
case "$cmd" in
  install)
    pkgs=""
    for a in "$@"; do case "$a" in -*) ;; *) pkgs="$pkgs $a" ;; esac; done
    [ -n "$pkgs" ] || exit 0
    [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$')" ] || apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs ;;
  clean)
    apt-get clean
    rm -rf /var/lib/apt/lists/* ;;
  *)
    echo "kg-pkgmgr: unsupported command '$cmd' (only install and clean)" >&2; exit 2 ;;
esac
SH

RECIPE="suite=$SUITE variant=$VARIANT packages=$PACKAGES mirror=$MIRROR
cas=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-16)
$PKGMGR_SCRIPT"
HASH="$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)"
IMAGE="localhost/kubegate-ee-base:$SUITE-$HASH"
STABLE="localhost/kubegate-ee-base:$SUITE"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf}"

mkdir -p "$CACHE"
exec 9>"$CACHE/ee-base.lock"
flock 9
if "$ENGINE" image exists "$IMAGE" 2>/dev/null; then
  "$ENGINE" tag "$IMAGE" "$STABLE"
  echo "$STABLE"
  exit 0
fi

TMP="$(mktemp -d "$CACHE/ee-base-$HASH.tmp.XXXXXX")"
# debootstrap mounts /proc in the new root; an interrupted run can leave it mounted
trap 'umount -R "$TMP/root/proc" 2>/dev/null || true; rm -rf --one-file-system "$TMP"' EXIT
echo "[ee-base] debootstrap $SUITE ($VARIANT) from $MIRROR" >&2
started=$SECONDS
debootstrap --variant="$VARIANT" --include="$PACKAGES" "$SUITE" "$TMP/root" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 || {
  tail -n 30 "$TMP/debootstrap.log" >&2; die "debootstrap $SUITE failed (full log above)"; }
root="$TMP/root"
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
printf '%s\n' "$PKGMGR_SCRIPT" >"$root/usr/local/bin/kg-pkgmgr"
chmod 0755 "$root/usr/local/bin/kg-pkgmgr"
apt-get -o RootDir="$root" clean >/dev/null 2>&1 || rm -rf "$root"/var/cache/apt/archives/*.deb
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
echo "[ee-base] importing into $ENGINE as $IMAGE" >&2
tar -C "$root" --numeric-owner -cf - . |
  "$ENGINE" import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
"$ENGINE" tag "$IMAGE" "$STABLE"
echo "[ee-base] built in $((SECONDS - started)) s" >&2
echo "$STABLE"
