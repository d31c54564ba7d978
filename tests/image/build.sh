#!/usr/bin/env bash
# make image: the OCI image, built with no Docker daemon, signed and attested as a release would
# be. A static (musl) release binary, a nonroot user 65532 and a CycloneDX SBOM are the only
# files; crane (go-containerregistry, built from its Go module) assembles them against a
# throwaway local registry, where cosign (from its Go module too) signs the digest and attaches
# the SBOM and an SLSA provenance statement as attestations, and the Helm chart is pushed as a
# signed OCI artifact (publish-chart.sh). The key: COSIGN_KEY, else a dev key (signing.sh).
# The revision and the build date (SOURCE_DATE_EPOCH, by default the commit's time) are the same
# in `--version`, the image labels and the provenance. Writes, under target/image/:
#   oci/                                  the image as an OCI layout (crane push oci/ REF to publish)
#   kafka-listener-injector-VERSION.tar   the same image as a tarball for `docker load`
#   sbom.cdx.json                         the SBOM (also inside the image, and attested)
#   provenance.json                       the SLSA v1 provenance predicate (attested)
#   digest                                the image's digest, for the chart's image.digest
#   signed-image/, signed-chart/          image and chart with their signatures and attestations
#                                         (`cosign load --dir` them into a registry)
#   cosign.pub, trusted-root.json         what a user verifies with (cosign)
#   pubring.gpg                           the same for the chart's Helm provenance (helm verify)
#   kafka-listener-injector-VERSION-linux-amd64.tar.gz   the static binary, for krew
# and plugins/kafka-listeners.yaml, the krew manifest with that archive's sha256.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date -u +%FT%TZ)
source tests/e2e/versions.env
crane=$(tests/tools/go-tool.sh crane)
cyclonedx=$(tests/tools/cargo-tool.sh cargo-cyclonedx)
source tests/image/signing.sh
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
home=$(sed -n 's/^home: *//p' charts/kafka-listener-injector/Chart.yaml)
target=x86_64-unknown-linux-musl
out=target/image
# What the binary, the labels and the provenance all say (build.rs reads the same two variables).
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
export KLI_REVISION=$revision
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ)
clean=true
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  clean=false
  echo "image: the work tree has uncommitted changes; revision $revision does not describe them (the provenance says so)" >&2
fi
rm -rf "$out"
mkdir -p "$out/rootfs/usr/local/bin" "$out/rootfs/etc/kafka-listener-injector/tls" \
  "$out/rootfs/usr/share/doc/kafka-listener-injector" "$out/rootfs/tmp"

rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
build_command=(cargo build --release --locked --target "$target" --bin kafka-listener-injector)
CC_x86_64_unknown_linux_musl=musl-gcc "${build_command[@]}" >&2
cp "target/$target/release/kafka-listener-injector" "$out/rootfs/usr/local/bin/"
strip "$out/rootfs/usr/local/bin/kafka-listener-injector"
if ldd "$out/rootfs/usr/local/bin/kafka-listener-injector" >/dev/null 2>&1 \
  && ! ldd "$out/rootfs/usr/local/bin/kafka-listener-injector" 2>&1 | grep -q "statically linked"; then
  echo "image: the binary is not static" >&2; exit 1
fi
echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >"$out/rootfs/etc/passwd"
echo "nonroot:x:65532:" >"$out/rootfs/etc/group"
"$cyclonedx" cyclonedx --format json --spec-version 1.5 --target "$target" --override-filename sbom.cdx >&2
mv sbom.cdx.json "$out/sbom.cdx.json"
cp "$out/sbom.cdx.json" "$out/rootfs/usr/share/doc/kafka-listener-injector/"

# One reproducible layer: fixed owners and times, sorted names.
tar --create --file "$out/layer.tar" --directory "$out/rootfs" --sort=name --owner=0 --group=0 \
  --numeric-owner --mtime=@0 --mode='u+rwX,go+rX,go-w' .

# The kubectl plugin for krew: the same binary in a reproducible archive, and its manifest.
archive=kafka-listener-injector-$version-linux-amd64.tar.gz
tar --create --directory "$out/rootfs/usr/local/bin" --sort=name --owner=0 --group=0 --numeric-owner \
  --mtime="@$SOURCE_DATE_EPOCH" kafka-listener-injector | gzip -n -9 >"$out/$archive"
sha256=$(sha256sum "$out/$archive" | cut -d' ' -f1)
sed -e "s|@VERSION@|$version|g" -e "s|@HOME@|$home|g" -e "s|@SHA256@|$sha256|g" \
  plugins/kafka-listeners.yaml.in >plugins/kafka-listeners.yaml

source tests/tools/local-registry.sh
start_registry "$crane" "$out/registry.log" || exit 1
port=$REGISTRY_PORT
trap 'kill $REGISTRY_PID 2>/dev/null' EXIT
ref=127.0.0.1:$port/kafka-listener-injector:$version
"$crane" append --insecure --oci-empty-base --platform linux/amd64 -f "$out/layer.tar" -t "$ref" >&2
"$crane" mutate --insecure "$ref" -t "$ref" --set-platform linux/amd64 \
  --entrypoint /usr/local/bin/kafka-listener-injector --cmd serve --user 65532:65532 --workdir / \
  --exposed-ports 8443/tcp,9090/tcp \
  -l org.opencontainers.image.title=kafka-listener-injector \
  -l org.opencontainers.image.description="Kubernetes mutating admission webhook that gives every Kafka broker pod its own advertised listeners" \
  -l org.opencontainers.image.version="$version" \
  -l org.opencontainers.image.revision="$revision" \
  -l org.opencontainers.image.created="$created" \
  -l org.opencontainers.image.source="$home" \
  -l org.opencontainers.image.licenses=Apache-2.0 >&2
"$crane" validate --insecure --remote "$ref" >&2
"$crane" pull --insecure --format oci "$ref" "$out/oci"
"$crane" pull --insecure "$ref" "$out/kafka-listener-injector-$version.tar"
"$crane" digest --insecure "$ref" >"$out/digest"
"$crane" config --insecure "$ref" >"$out/config.json"
rm -f "$out/layer.tar"
digest=$(cat "$out/digest")
signed=127.0.0.1:$port/kafka-listener-injector@$digest

# SLSA v1 provenance: what was built from which source, by whom, with which command and tools.
jq -n --arg home "$home" --arg revision "$revision" --arg version "$version" --arg created "$created" \
  --arg epoch "$SOURCE_DATE_EPOCH" --argjson clean "$clean" --arg target "$target" \
  --arg command "${build_command[*]}" --arg lock "$(sha256sum Cargo.lock | cut -d' ' -f1)" \
  --arg builder "${KLI_BUILDER_ID:-urn:kafka-listener-injector:builder:local:$(hostname)}" \
  --arg rustc "$(rustc --version)" --arg crane "$CRANE_VERSION" --arg cosign "$COSIGN_VERSION" \
  --arg cyclonedx "$("$cyclonedx" cyclonedx --version 2>/dev/null | head -n 1)" \
  --arg started "$started" --arg finished "$(date -u +%FT%TZ)" '{
  buildDefinition: {
    buildType: ($home + "/blob/main/tests/image/build.sh"),
    externalParameters: {
      command: "make image", script: "tests/image/build.sh", build: $command,
      source: {uri: ("git+" + $home), revision: $revision},
      version: $version, target: $target, platform: "linux/amd64"
    },
    internalParameters: {
      revision: $revision, buildDate: $created, sourceDateEpoch: $epoch, sourceTreeClean: $clean
    },
    resolvedDependencies: [
      {uri: ("git+" + $home), digest: {gitCommit: $revision}},
      {name: "Cargo.lock", digest: {sha256: $lock}}
    ]
  },
  runDetails: {
    builder: {id: $builder,
      version: {rustc: $rustc, crane: $crane, cosign: $cosign, "cargo-cyclonedx": $cyclonedx}},
    metadata: {startedOn: $started, finishedOn: $finished}
  }
}' >"$out/provenance.json"

# Sign the digest (never a tag), attach both attestations, and keep all of it with the image.
"$cosign" sign "${cosign_sign[@]}" "$signed" >"$out/cosign.log" 2>&1 || { cat "$out/cosign.log" >&2; exit 1; }
"$cosign" attest "${cosign_sign[@]}" --type cyclonedx --predicate "$out/sbom.cdx.json" "$signed" \
  >>"$out/cosign.log" 2>&1 || { cat "$out/cosign.log" >&2; exit 1; }
"$cosign" attest "${cosign_sign[@]}" --type slsaprovenance1 --predicate "$out/provenance.json" "$signed" \
  >>"$out/cosign.log" 2>&1 || { cat "$out/cosign.log" >&2; exit 1; }
"$cosign" save --allow-http-registry --dir "$out/signed-image" "$signed" >>"$out/cosign.log" 2>&1
chart=$(tests/image/publish-chart.sh "127.0.0.1:$port")
"$cosign" save --allow-http-registry --dir "$out/signed-chart" "$chart" >>"$out/cosign.log" 2>&1
cp "$signing_pub" target/signing/trusted-root.json "$helm_pub" "$out/"
echo "image: kafka-listener-injector:$version $digest, $(du -h "$out/kafka-listener-injector-$version.tar" | cut -f1) as a tarball, revision $revision built $created" >&2
echo "image: signed, SBOM and provenance attested, with $signing_key_kind; chart ${chart#*@}; krew archive sha256 $sha256" >&2
