#!/usr/bin/env bash
# go-tool.sh helm|crane|cosign|traefik: builds the tool once from its Go module (versions in
# tests/e2e/versions.env) into ~/.cache/kafka-listener-injector/tools and prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/versions.env
case "${1:-}" in
  helm) module=helm.sh/helm/v3/cmd/helm version=v$HELM_VERSION ;;
  crane) module=github.com/google/go-containerregistry/cmd/crane version=v$CRANE_VERSION ;;
  cosign) module=github.com/sigstore/cosign/v3/cmd/cosign version=v$COSIGN_VERSION ;;
  traefik) module=github.com/traefik/traefik/v3 version=v$TRAEFIK_VERSION ;;
  *) echo "usage: $0 helm|crane|cosign|traefik" >&2; exit 2 ;;
esac
tools=$HOME/.cache/kafka-listener-injector/tools
dir=$tools/$1-$version
[ -x "$dir/$1" ] && { echo "$dir/$1"; exit 0; }
echo "go-tool: building $1 $version from $module (once)" >&2
if [ "$1" != traefik ]; then
  GOBIN=$dir go install "$module@$version" >&2
  echo "$dir/$1"
  exit 0
fi

# Traefik's go.mod has replace directives, so `go install module@version` refuses it: it is built
# inside a writable copy of its module, with three changes, none in what the e2e uses (the
# Kubernetes Gateway provider, TCP routing by SNI, TLS passthrough):
#  - the nested module github.com/traefik/traefik/dynamic/ext is left out of the module zip (a
#    nested module always is) and is not on the module proxy: its two extension points, empty
#    structs in the open-source build, are written here;
#  - the basic/digest-auth middlewares' fork github.com/containous/go-http-auth is not served by
#    the module proxy: the upstream it forks, github.com/abbot/go-http-auth v0.4.0, stands in,
#    which lacks two of the fork's additions: basic auth refuses every password (fail closed)
#    and digest auth answers a stale nonce as a failed login;
#  - the ACME DNS-01 providers (lego's providers/dns) need SDKs the module proxy does not serve:
#    a DNS challenge provider is refused by name instead.
src=$(go mod download -json "$module@$version" | jq -r .Dir)
build=$tools/src/traefik-$version
rm -rf "$build"
mkdir -p "$tools/src"
cp -r "$src" "$build"
chmod -R u+w "$build"
cd "$build"
mkdir -p pkg/config/dynamic/ext
printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >pkg/config/dynamic/ext/go.mod
cat >pkg/config/dynamic/ext/ext.go <<'GO'
// Package ext: the extension points of Traefik's dynamic configuration, empty in this build.
package ext

// HTTP extends dynamic.HTTP.
type HTTP struct{}

// Router extends dynamic.Router.
type Router struct{}
GO
go mod edit -dropreplace github.com/abbot/go-http-auth -require github.com/abbot/go-http-auth@v0.4.0
sed -i -e '\|"github.com/go-acme/lego/v5/providers/dns"|d' \
  -e 's|provider, err = dns.NewDNSChallengeProviderByName(p.DNSChallenge.Provider)|err = fmt.Errorf("DNS challenge provider %q: not in this build", p.DNSChallenge.Provider)|' \
  pkg/provider/acme/provider.go
sed -i 's|checkSecret:       goauth.CheckSecret,|checkSecret:       func(string, string) bool { return false },|' \
  pkg/middlewares/auth/basic_auth.go
sed -i 's|d.auth.RequireAuthStale(rw, req)|d.auth.RequireAuth(rw, req)|' pkg/middlewares/auth/digest_auth.go
if ! grep -q 'not in this build' pkg/provider/acme/provider.go || grep -q 'goauth.CheckSecret' pkg/middlewares/auth/basic_auth.go \
  || grep -q RequireAuthStale pkg/middlewares/auth/digest_auth.go; then
  echo "go-tool: patching Traefik $version failed (its source changed?)" >&2
  exit 1
fi
go build -mod=mod -trimpath -ldflags "-X github.com/traefik/traefik/v3/pkg/version.Version=$version" \
  -o "$dir/traefik" ./cmd/traefik >&2
cd - >/dev/null
rm -rf "$build"
rmdir "$tools/src" 2>/dev/null || true
echo "$dir/traefik"
