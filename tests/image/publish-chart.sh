#!/usr/bin/env bash
# publish-chart.sh HOST:PORT: the Helm chart as an OCI artifact, as a release publishes it.
# `helm package --sign` into target/chart/ (the .prov that `helm install --verify` checks),
# `helm push` of both to oci://HOST:PORT/charts (plain HTTP: a loopback registry), then
# `cosign sign` of the pushed digest. Keys: signing.sh.
# Prints the pushed reference, HOST:PORT/charts/kafka-listener-injector@sha256:...
set -euo pipefail
cd "$(dirname "$0")/../.."
registry=${1:?usage: $0 HOST:PORT}
helm=$(tests/tools/go-tool.sh helm)
source tests/image/signing.sh
chart=charts/kafka-listener-injector
version=$(sed -n 's/^version: *//p' "$chart/Chart.yaml")
mkdir -p target/chart
rm -f "target/chart/kafka-listener-injector-$version.tgz"*
"$helm" package "${helm_sign[@]}" "$chart" --destination target/chart >&2
"$helm" push "target/chart/kafka-listener-injector-$version.tgz" "oci://$registry/charts" --plain-http \
  >target/chart/push.log 2>&1 || { cat target/chart/push.log >&2; exit 1; }
digest=$(sed -n 's/^Digest: *//p' target/chart/push.log)
[ -n "$digest" ] || { echo "publish-chart: helm push printed no digest" >&2; cat target/chart/push.log >&2; exit 1; }
ref=$registry/charts/kafka-listener-injector@$digest
"$cosign" sign "${cosign_sign[@]}" "$ref" >&2 2>target/chart/sign.log \
  || { cat target/chart/sign.log >&2; exit 1; }
echo "publish-chart: oci://$registry/charts/kafka-listener-injector:$version $digest, signed with $signing_key_kind" >&2
echo "$ref"
