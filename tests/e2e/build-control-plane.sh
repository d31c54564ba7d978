#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager 1.20.2 from Debian's source package and caches
# them, so that `make e2e` runs a real control plane with nothing but the package registries.
# Prints the directory holding the binaries (and etcd is taken from Debian's etcd-server).
set -euo pipefail

version=1.20.2
cache=${KLI_E2E_CACHE:-$HOME/.cache/kafka-listener-injector/k8s-$version}
bin=$cache/bin

log() { echo "build-control-plane: $*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

apt_install etcd-server

if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ]; then
  echo "$bin"
  exit 0
fi

apt_install golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev

work=$cache/src
rm -rf "$work"
mkdir -p "$work" "$bin"

# A private apt configuration with a deb-src entry, so the machine's own sources stay untouched.
aptdir=$work/apt
mkdir -p "$aptdir/lists/partial" "$aptdir/sources.list.d"
cat >"$aptdir/sources.list.d/bookworm-src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
aptopts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$aptdir/sources.list.d"
         -o "Dir::State::Lists=$aptdir/lists")
log "downloading the kubernetes source package"
apt-get "${aptopts[@]}" update -qq >&2
(cd "$work" && apt-get "${aptopts[@]}" source --download-only kubernetes >&2)

tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n 1)
mkdir -p "$work/tree"
tar -xzf "$tarball" -C "$work/tree" --strip-components=1
tree=$work/tree

# Go 1.19 with the vendored reflect2 1.0.1 crashes in json-iterator on the first webhook call;
# Debian's reflect2 1.0.2 does not.
rm -rf "$tree/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"

mkdir -p "$tree/.go/src/k8s.io"
ln -sfn "$tree" "$tree/.go/src/k8s.io/kubernetes"
log "building kube-apiserver and kube-controller-manager (about 8 minutes on 2 cores)"
(
  cd "$tree/.go/src/k8s.io/kubernetes"
  export GOPATH=$tree/.go GOCACHE=$work/gocache GOFLAGS=-mod=vendor CGO_ENABLED=0
  export KUBE_GIT_VERSION=v$version KUBE_GIT_TREE_STATE=clean
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
)
out=$(find "$tree/_output" -type f -name kube-apiserver -path '*bin*' | head -n 1)
cp "$out" "$(dirname "$out")/kube-controller-manager" "$bin/"
rm -rf "$work"
echo "$bin"
