#!/bin/sh
# Ansible Vault password for the kubegate inventories -- the password itself is never stored in the repository.
#
#   ansible-playbook -i inventories/acme playbooks/health.yml --vault-password-file inventories/vault-pass.sh
#   export ANSIBLE_VAULT_PASSWORD_FILE=$PWD/inventories/vault-pass.sh      (then no option is needed)
#
# Where the password comes from (first that is set):
#   KUBEGATE_VAULT_PASSWORD        the password (a CI secret variable; in AWX prefer a Vault credential)
#   KUBEGATE_VAULT_PASSWORD_FILE   a file holding it (first line), default ~/.config/kubegate/vault-password;
#                                  refused when it lies inside this repository or is readable by others.
#
# The example inventories (inventories/acme, inventories/globex) are encrypted with the published EXAMPLE password
# "kubegate-example-vault-password" (docs/tenants.md). It protects nothing: it exists so the examples can be tried.
# Re-encrypt real secrets with your own password (`ansible-vault encrypt_string`, `ansible-vault rekey`).
set -eu

case " $* " in
  *" --list "* | *" --host "*)
    # Someone pointed `-i` at inventories/ itself: never print the password as "inventory".
    echo "vault-pass.sh is a vault password script, not an inventory; use -i inventories/<tenant>" >&2
    exit 2 ;;
esac

if [ -n "${KUBEGATE_VAULT_PASSWORD:-}" ]; then
  printf '%s\n' "$KUBEGATE_VAULT_PASSWORD"
  exit 0
fi

file="${KUBEGATE_VAULT_PASSWORD_FILE:-${HOME:-~}/.config/kubegate/vault-password}"
if [ ! -r "$file" ]; then
  echo "vault-pass.sh: no vault password: set KUBEGATE_VAULT_PASSWORD, or put it in $file (mode 0600, outside the" \
       "repository), or set KUBEGATE_VAULT_PASSWORD_FILE" >&2
  exit 1
fi
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
real="$(cd "$(dirname "$file")" && pwd -P)/$(basename "$file")"
case "$real" in
  "$repo"/*)
    echo "vault-pass.sh: refusing $file: a vault password file must live outside the repository ($repo)" >&2
    exit 1 ;;
esac
if [ -n "$(find "$real" -maxdepth 0 -perm /077 2>/dev/null)" ]; then
  echo "vault-pass.sh: refusing $file: it is readable by group/others; chmod 600 it" >&2
  exit 1
fi
head -n 1 "$real"
