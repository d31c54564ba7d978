#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager (from the k8s.io/kubernetes Go module) and etcd
# (from go.etcd.io/etcd/server/v3) at the versions in versions.env, and caches them under
# ~/.cache, so that `make e2e` runs a current control plane with nothing but the Go module proxy.
# Idempotent; prints progress on stderr and the directory holding the binaries on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache=${KLI_E2E_CACHE:-$HOME/.cache/kafka-listener-injector}/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
bin=$cache/bin
log() { echo "build-control-plane: $*" >&2; }

if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/etcd" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { log "the Go toolchain is required (go 1.26+)"; exit 1; }

staging_minor=0.${K8S_VERSION#1.}
work=$cache/mod
rm -rf "$work"
mkdir -p "$work/etcd" "$bin"
cd "$work"

# A throwaway module that requires k8s.io/kubernetes. Its own go.mod points every k8s.io staging
# module at ./staging (absent from the module zip); pin each to the published v0.x.y instead.
cat >go.mod <<MOD
module kli.e2e/controlplane

go 1.26

require k8s.io/kubernetes v$K8S_VERSION
MOD
cat >etcd/main.go <<'GO'
// etcd, built from its server module at the version Kubernetes itself requires.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
log "resolving k8s.io/kubernetes v$K8S_VERSION"
GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" >"$work/kube.json"
kube_mod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "$work/kube.json")
grep -oE '^\s+k8s.io/[a-z0-9-]+ => ./staging' "$kube_mod" | awk '{print $1}' | while read -r m; do
  echo "replace $m => $m v$staging_minor"
done >>go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)
GO
log "go mod tidy (downloads the modules once into the Go module cache)"
go mod tidy >&2
export CGO_ENABLED=0
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
for cmd in kube-apiserver kube-controller-manager; do
  log "building $cmd v$K8S_VERSION (several minutes on 2 cores)"
  go build -trimpath -ldflags "$ldflags" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" >&2
  mv "$bin/$cmd.tmp" "$bin/$cmd"
done
log "building etcd v$ETCD_VERSION"
go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" ./etcd >&2
mv "$bin/etcd.tmp" "$bin/etcd"
"$bin/kube-apiserver" --version >&2
"$bin/etcd" --version >&2 | head -n 1
echo "$bin"
