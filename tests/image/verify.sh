#!/usr/bin/env bash
# Part of make image-test: what `make image` signed, verified as a user would. The signed image
# and chart (target/image/signed-*) are loaded into a fresh registry, then checked with nothing
# but the public key: `cosign verify`, `cosign verify-attestation` for the SBOM and the
# provenance, `helm pull` of the verified chart. An image re-tagged to an unsigned one, a key that
# did not sign, and a chart pushed again unsigned must all be refused. Then the krew manifest
# against the archive it names. Exits 1 when any check fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=target/image
crane=$(tests/tools/go-tool.sh crane)
cosign=$(tests/tools/go-tool.sh cosign)
helm=$(tests/tools/go-tool.sh helm)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
chart_version=$(sed -n 's/^version: *//p' charts/kafka-listener-injector/Chart.yaml)
digest=$(cat "$out/digest")
failed=0
check() { # check WHAT ACTUAL EXPECTED
  if [ "$2" == "$3" ]; then echo "  ok   $1"; else echo "  FAIL $1: got '$2', expected '$3'"; failed=1; fi
}
refused() { # refused WHAT COMMAND...: the command must fail; shows cosign's reason
  local reason
  if reason=$("${@:2}" 2>&1 >/dev/null); then
    echo "  FAIL $1: accepted"; failed=1
  else
    echo "  ok   $1: refused ($(grep -m1 '^Error:' <<<"$reason" | cut -c1-150))"
  fi
}
label() { jq -r --arg l "$1" '.config.Labels[$l]' "$out/config.json"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source tests/tools/local-registry.sh
start_registry "$crane" "$work/registry.log" || exit 1
port=$REGISTRY_PORT
trap 'kill $REGISTRY_PID 2>/dev/null; rm -rf "$work"' EXIT
repo=127.0.0.1:$port/kafka-listener-injector
charts=127.0.0.1:$port/charts/kafka-listener-injector
"$cosign" load --allow-http-registry --dir "$out/signed-image" "$repo:$version" >"$work/load.log" 2>&1 \
  || { cat "$work/load.log"; exit 1; }
"$cosign" load --allow-http-registry --dir "$out/signed-chart" "$charts:$chart_version" >>"$work/load.log" 2>&1 \
  || { cat "$work/load.log"; exit 1; }
# What a user has: the public key (and, offline, a trusted root naming no transparency log).
verify=(--key "$out/cosign.pub" --trusted-root "$out/trusted-root.json" --insecure-ignore-tlog
  --allow-http-registry)

echo "image-test: cosign, against the public key $out/cosign.pub"
if "$cosign" verify "${verify[@]}" "$repo:$version" >"$work/verify.json" 2>"$work/verify.err"; then
  check "cosign verify $repo:$version: the signature covers the built digest" \
    "$(jq -r '.[0].critical.image["docker-manifest-digest"]' "$work/verify.json")" "$digest"
else
  check "cosign verify $repo:$version" "$(grep -m1 '^Error:' "$work/verify.err")" "a verified signature"
fi
attestation() { # attestation TYPE -> the verified statement's predicate
  "$cosign" verify-attestation "${verify[@]}" --type "$1" "$repo:$version" 2>"$work/attest.err" \
    | head -n 1 | jq -r .payload | base64 -d | jq -S .predicate
}
sbom=$(attestation cyclonedx)
check "cosign verify-attestation --type cyclonedx: the SBOM attested is the SBOM in the image" \
  "$(sha256sum <<<"$sbom" | cut -d' ' -f1)" "$(jq -S . "$out/sbom.cdx.json" | sha256sum | cut -d' ' -f1)"
provenance=$(attestation slsaprovenance1)
check "cosign verify-attestation --type slsaprovenance1: the provenance names the labelled revision" \
  "$(jq -r .buildDefinition.externalParameters.source.revision <<<"$provenance")" \
  "$(label org.opencontainers.image.revision)"
check "  and the labelled build date" "$(jq -r .buildDefinition.internalParameters.buildDate <<<"$provenance")" \
  "$(label org.opencontainers.image.created)"
check "  and the build command" "$(jq -r .buildDefinition.externalParameters.command <<<"$provenance")" "make image"
check "  and a builder" "$(jq -r '.runDetails.builder.id | length > 0' <<<"$provenance")" true

(cd "$work" && COSIGN_PASSWORD='' "$cosign" generate-key-pair >/dev/null 2>&1)
refused "a key that did not sign" "$cosign" verify --key "$work/cosign.pub" \
  --trusted-root "$out/trusted-root.json" --insecure-ignore-tlog --allow-http-registry "$repo:$version"
refused "cosign verify without --insecure-ignore-tlog (signed offline: no Rekor entry)" \
  "$cosign" verify --key "$out/cosign.pub" --trusted-root "$out/trusted-root.json" --allow-http-registry "$repo:$version"
# The tag moved to an image nobody signed: one label differs, so the digest does.
"$crane" mutate --insecure "$repo:$version" -t "$repo:$version" -l org.opencontainers.image.title=tampered >/dev/null 2>&1
check "the tag now names another digest" "$("$crane" digest --insecure "$repo:$version" | grep -c "$digest")" 0
refused "cosign verify of the re-tagged, unsigned image" "$cosign" verify "${verify[@]}" "$repo:$version"
refused "cosign verify-attestation of it" "$cosign" verify-attestation "${verify[@]}" --type slsaprovenance1 "$repo:$version"

echo "image-test: the chart as an OCI artifact"
if "$cosign" verify "${verify[@]}" "$charts:$chart_version" >"$work/chart.json" 2>"$work/verify.err"; then
  chart_digest=$(jq -r '.[0].critical.image["docker-manifest-digest"]' "$work/chart.json")
  check "cosign verify $charts:$chart_version" ok ok
else
  check "cosign verify $charts:$chart_version" "$(grep -m1 '^Error:' "$work/verify.err")" "a verified signature"
  chart_digest=none
fi
mkdir -p "$work/pulled"
"$helm" pull "oci://$charts" --version "$chart_version" --plain-http --verify --keyring "$out/pubring.gpg" \
  --destination "$work/pulled" >"$work/pull.log" 2>&1
check "helm pull --verify oci://$charts --version $chart_version: the Helm provenance verifies" \
  "$(grep -c '^Chart Hash Verified: ' "$work/pull.log")" 1
check "  and it is the digest cosign verified" "$(sed -n 's/^Digest: *//p' "$work/pull.log" | head -n 1)" "$chart_digest"
check "  with its Artifact Hub image" \
  "$("$helm" show chart "$work/pulled/kafka-listener-injector-$chart_version.tgz" | sed -n 's/^ *image: //p')" \
  "$(sed -n 's/^ *repository: //p' charts/kafka-listener-injector/values.yaml | head -n 1):$version"
# The same version pushed again, unsigned, with other values.
mkdir -p "$work/tampered"
tar -xzf "$work/pulled/kafka-listener-injector-$chart_version.tgz" -C "$work/tampered"
sed -i 's/^  failurePolicy: Fail/  failurePolicy: Ignore/' "$work/tampered/kafka-listener-injector/values.yaml"
"$helm" package "$work/tampered/kafka-listener-injector" --destination "$work/tampered" >/dev/null
"$helm" push "$work/tampered/kafka-listener-injector-$chart_version.tgz" "oci://127.0.0.1:$port/charts" \
  --plain-http >/dev/null 2>&1
refused "cosign verify of a chart pushed again unsigned" "$cosign" verify "${verify[@]}" "$charts:$chart_version"
refused "helm pull --verify of it" "$helm" pull "oci://$charts" --version "$chart_version" --plain-http --verify \
  --keyring "$out/pubring.gpg" --destination "$work/tampered"

echo "image-test: the krew manifest"
tests/image/check-krew.sh plugins/kafka-listeners.yaml "$out" "$work/krew" || failed=1
# One hex digit changed.
awk '/^      sha256: / { c = substr($2, 1, 1); $0 = "      sha256: " (c == "0" ? "1" : "0") substr($2, 2) } 1' \
  plugins/kafka-listeners.yaml >"$work/wrong-sha.yaml"
refused "a manifest whose sha256 is not the archive's" tests/image/check-krew.sh "$work/wrong-sha.yaml" "$out" "$work/krew-wrong"
exit $failed
