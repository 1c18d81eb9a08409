#!/usr/bin/env bash
# Install the Debian packages the lab and the tests need. Idempotent: does nothing when all are present.
# Services are never started by the install (policy-rc.d): the lab starts its own nginx/sshd instances.
set -euo pipefail
packages=(nginx openssh-server openssh-client iproute2 debootstrap systemd-container curl procps psmisc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "lab deps: missing Debian packages: ${missing[*]} (run as root, or install them: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "[lab deps] installing: ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Make sure no packaged daemon was left running on a public address.
for svc in nginx ssh; do
  if pgrep -x "${svc/ssh/sshd}" >/dev/null 2>&1 && [ -x /etc/init.d/$svc ]; then /etc/init.d/$svc stop >/dev/null 2>&1 || true; fi
done
