#!/usr/bin/env bash
# Build the lab's control-plane binaries from Go modules (through the Go module proxy) into a cache outside the repo.
# Idempotent: a binary already built for its pinned version is kept. Usage: lab/build.sh [component...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/versions.env
. "$here/versions.env"
CACHE=${KUBEGATE_CACHE:-$HOME/.cache/kubegate}
BIN=$CACHE/bin
WORK=$CACHE/build
mkdir -p "$BIN" "$WORK"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

log() { printf '[lab build] %s\n' "$*" >&2; }

have() { [ -x "$BIN/$1-$2" ]; }

link() { ln -sfn "$1-$2" "$BIN/$1"; }

# k8s.io/kubernetes replaces its staging modules with local paths; pin each to the matching published v0 version.
build_kubernetes() {
  local v=$KUBERNETES_VERSION minor=${KUBERNETES_VERSION#v1.}
  local staging="v0.${minor}"
  local wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local todo=()
  for c in "${wanted[@]}"; do have "$c" "$v" || todo+=("$c"); done
  if [ ${#todo[@]} -eq 0 ]; then for c in "${wanted[@]}"; do link "$c" "$v"; done; return; fi
  local dir=$WORK/kubernetes-$v
  mkdir -p "$dir"
  log "kubernetes $v: resolving module graph in $dir"
  local gomod
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module kubegate.local/labbuild"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v s="$staging" '{print "replace " $1 " => " $1 " " s}'
  } >"$dir/go.mod"
  local pkgs=()
  for c in "${wanted[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$v"); done
  (cd "$dir" && go get "${pkgs[@]}" >/dev/null)
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
  ld+=" -X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/component-base/version.gitTreeState=clean"
  ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1"
  ld+=" -X k8s.io/client-go/pkg/version.gitMinor=${minor%%.*}"
  for c in "${todo[@]}"; do
    log "kubernetes $v: building $c"
    (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$BIN/$c-$v.tmp" "k8s.io/kubernetes/cmd/$c")
    mv "$BIN/$c-$v.tmp" "$BIN/$c-$v"
  done
  for c in "${wanted[@]}"; do link "$c" "$v"; done
}

build_sample_apiserver() {
  local minor=${KUBERNETES_VERSION#v1.} v
  v="v0.${minor}"
  if ! have sample-apiserver "$v"; then
    log "sample-apiserver $v: building"
    local dir=$WORK/sample-apiserver-$v
    mkdir -p "$dir"
    (cd "$dir" && [ -f go.mod ] || (cd "$dir" && go mod init kubegate.local/samplebuild >/dev/null 2>&1))
    (cd "$dir" && go get "k8s.io/sample-apiserver@$v" >/dev/null && go build -trimpath -ldflags "-s -w" -o "$BIN/sample-apiserver-$v.tmp" k8s.io/sample-apiserver)
    mv "$BIN/sample-apiserver-$v.tmp" "$BIN/sample-apiserver-$v"
  fi
  link sample-apiserver "$v"
}

# etcd's server module also replaces sibling modules locally: pin them to the same version.
build_etcd() {
  local v=$ETCD_VERSION
  if ! have etcd "$v"; then
    local dir=$WORK/etcd-$v
    mkdir -p "$dir"
    log "etcd $v: building"
    {
      echo "module kubegate.local/etcdbuild"; echo; echo "go 1.25"; echo
      echo "require go.etcd.io/etcd/server/v3 $v"
      for m in api/v3 client/pkg/v3 client/v3 pkg/v3 server/v3; do echo "replace go.etcd.io/etcd/$m => go.etcd.io/etcd/$m $v"; done
    } >"$dir/go.mod"
    (cd "$dir" && go get "go.etcd.io/etcd/server/v3@$v" >/dev/null && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd-$v.tmp" go.etcd.io/etcd/server/v3)
    mv "$BIN/etcd-$v.tmp" "$BIN/etcd-$v"
  fi
  link etcd "$v"
}

# kwok's local exec reports a failing command as an InternalError without its exit code (the kubelet streaming server
# only recognises k8s.io/utils/exec.ExitError). The lab patches its build so a non-zero exit travels as NonZeroExitCode,
# as it does with a real kubelet. The patch is applied to a private copy of the module; nothing upstream is committed.
KWOK_PATCH_ID=exitcode-stdin-2
build_kwok() {
  local v=$KWOK_VERSION
  local tag="$v-$KWOK_PATCH_ID"
  if ! have kwok "$tag"; then
    log "kwok $v: building (patched: $KWOK_PATCH_ID)"
    local src dir=$WORK/kwok-$v-src
    src=$(cd "$WORK" && go mod download -json "sigs.k8s.io/kwok@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$dir" && cp -r "$src" "$dir" && chmod -R u+w "$dir"
    python3 "$here/patch_kwok.py" "$dir"
    (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/kwok-$tag.tmp" ./cmd/kwok)
    mv "$BIN/kwok-$tag.tmp" "$BIN/kwok-$tag"
  fi
  link kwok "$tag"
  # The CRDs of kwok's Exec/ClusterExec (the lab applies them before starting kwok).
  if [ ! -f "$CACHE/share/kwok-crds/$v/kwok.x-k8s.io_execs.yaml" ]; then
    local src
    src=$(cd "$WORK" && go mod download -json "sigs.k8s.io/kwok@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$CACHE/share/kwok-crds/$v"
    cp "$src"/kustomize/crd/bases/kwok.x-k8s.io_*.yaml "$CACHE/share/kwok-crds/$v/"
  fi
  ln -sfn "$v" "$CACHE/share/kwok-crds/current"
}

# The Gateway API CRDs, standard channel (every lab cluster installs them: lab/kglab/gateway_api.py). Only the YAML
# files are taken from the module; nothing is built.
fetch_gateway_api() {
  local v=$GATEWAY_API_VERSION dest=$CACHE/share/gateway-api-crds/$GATEWAY_API_VERSION
  if [ ! -f "$dest/gateway.networking.k8s.io_httproutes.yaml" ]; then
    log "gateway-api $v: taking the standard-channel CRDs from the Go module"
    local src
    src=$(cd "$WORK" && go mod download -json "sigs.k8s.io/gateway-api@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$dest.tmp"
    cp "$src"/config/crd/standard/*.yaml "$dest.tmp/"
    chmod u+w "$dest.tmp"/*.yaml
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
  fi
  ln -sfn "$v" "$CACHE/share/gateway-api-crds/current"
}

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kwok kubernetes sample-apiserver gateway-api)
for c in "${components[@]}"; do
  case $c in
    etcd) build_etcd ;;
    kwok) build_kwok ;;
    kubernetes) build_kubernetes ;;
    sample-apiserver) build_sample_apiserver ;;
    gateway-api) fetch_gateway_api ;;
    *) log "unknown component: $c"; exit 2 ;;
  esac || { log "FAILED building $c (Go module proxy reachable? see output above)"; exit 1; }
done
log "all built in $BIN"
