#!/usr/bin/env bash
# go-tool.sh helm|crane|cosign: builds the tool once from its Go module (versions in
# tests/e2e/versions.env) into ~/.cache/kafka-listener-injector/tools and prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/versions.env
case "${1:-}" in
  helm) module=helm.sh/helm/v3/cmd/helm version=v$HELM_VERSION ;;
  crane) module=github.com/google/go-containerregistry/cmd/crane version=v$CRANE_VERSION ;;
  cosign) module=github.com/sigstore/cosign/v3/cmd/cosign version=v$COSIGN_VERSION ;;
  *) echo "usage: $0 helm|crane|cosign" >&2; exit 2 ;;
esac
dir=$HOME/.cache/kafka-listener-injector/tools/$1-$version
if [ ! -x "$dir/$1" ]; then
  echo "go-tool: building $1 $version from $module (once)" >&2
  GOBIN=$dir go install "$module@$version" >&2
fi
echo "$dir/$1"
