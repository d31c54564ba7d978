#!/usr/bin/env bash
# make image: the OCI image, built with no Docker daemon. A static (musl) release binary, a
# nonroot user 65532 and a CycloneDX SBOM are the only files; crane (go-containerregistry, built
# from its Go module) assembles them against a throwaway local registry. Writes, under
# target/image/:
#   oci/                                  the image as an OCI layout (crane push oci/ REF to publish)
#   kafka-listener-injector-VERSION.tar   the same image as a tarball for `docker load`
#   sbom.cdx.json                         the SBOM (also inside the image)
#   digest                                the image's digest, for the chart's image.digest
# The Dockerfile builds the same layout (entrypoint, user, ports) for users with Docker.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/versions.env
crane=$(tests/tools/go-tool.sh crane)
cyclonedx=$(tests/tools/cargo-tool.sh cargo-cyclonedx)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
target=x86_64-unknown-linux-musl
out=target/image
rm -rf "$out"
mkdir -p "$out/rootfs/usr/local/bin" "$out/rootfs/etc/kafka-listener-injector/tls" \
  "$out/rootfs/usr/share/doc/kafka-listener-injector" "$out/rootfs/tmp"

rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$target" --bin kafka-listener-injector >&2
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

port=$((40000 + RANDOM % 20000))
"$crane" registry serve --address "127.0.0.1:$port" >"$out/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
ref=127.0.0.1:$port/kafka-listener-injector:$version
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
"$crane" append --insecure --oci-empty-base --platform linux/amd64 -f "$out/layer.tar" -t "$ref" >&2
"$crane" mutate --insecure "$ref" -t "$ref" --set-platform linux/amd64 \
  --entrypoint /usr/local/bin/kafka-listener-injector --cmd serve --user 65532:65532 --workdir / \
  --exposed-ports 8443/tcp,9090/tcp \
  -l org.opencontainers.image.title=kafka-listener-injector \
  -l org.opencontainers.image.description="Kubernetes mutating admission webhook that gives every Kafka broker pod its own advertised listeners" \
  -l org.opencontainers.image.version="$version" \
  -l org.opencontainers.image.revision="$revision" \
  -l org.opencontainers.image.licenses=Apache-2.0 >&2
"$crane" validate --insecure --remote "$ref" >&2
"$crane" pull --insecure --format oci "$ref" "$out/oci"
"$crane" pull --insecure "$ref" "$out/kafka-listener-injector-$version.tar"
"$crane" digest --insecure "$ref" >"$out/digest"
"$crane" config --insecure "$ref" >"$out/config.json"
rm -f "$out/layer.tar"
echo "image: kafka-listener-injector:$version $(cat "$out/digest"), $(du -h "$out/kafka-listener-injector-$version.tar" | cut -f1) as a tarball" >&2
