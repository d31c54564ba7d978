#!/usr/bin/env bash
# The image as a container runtime would run it: its layers unpacked from the OCI layout that
# `make image` wrote, its config's entrypoint run as its config's user on a read-only root, with
# a certificate mounted where the manifests mount it. `serve` must start and answer /readyz.
# Its `--version` must say the revision and date its labels say. Then verify.sh: signatures,
# attestations, the chart as an OCI artifact and the krew manifest, checked as a user would.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=target/image
[ -f "$out/config.json" ] || { echo "image-test: run make image first" >&2; exit 1; }
failed=0
check() { # check WHAT ACTUAL EXPECTED
  if [ "$2" == "$3" ]; then echo "  ok   $1"; else echo "  FAIL $1: got '$2', expected '$3'"; failed=1; fi
}
config=$out/config.json
check "user" "$(jq -r .config.User "$config")" "65532:65532"
check "entrypoint" "$(jq -c .config.Entrypoint "$config")" '["/usr/local/bin/kafka-listener-injector"]'
check "cmd" "$(jq -c .config.Cmd "$config")" '["serve"]'
check "version label" "$(jq -r '.config.Labels["org.opencontainers.image.version"]' "$config")" \
  "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"

work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && pkill -KILL -P "$pid"; rm -rf "$work"' EXIT
mkdir -p "$work/root"
# Unpack every layer of the layout's manifest, in order.
manifest=$(jq -r '.manifests[0].digest' "$out/oci/index.json" | sed 's/sha256://')
for layer in $(jq -r '.layers[].digest' "$out/oci/blobs/sha256/$manifest" | sed 's/sha256://'); do
  tar -xzf "$out/oci/blobs/sha256/$layer" -C "$work/root" 2>/dev/null \
    || tar -xf "$out/oci/blobs/sha256/$layer" -C "$work/root"
done
check "nothing but the binary, passwd, group and the SBOM" \
  "$(cd "$work/root" && find . -type f | sort | tr '\n' ' ')" \
  "./etc/group ./etc/passwd ./usr/local/bin/kafka-listener-injector ./usr/share/doc/kafka-listener-injector/sbom.cdx.json "
printed=$("$work/root/usr/local/bin/kafka-listener-injector" --version)
check "--version names the labelled revision" "$(sed -n 's/^revision: //p' <<<"$printed")" \
  "$(jq -r '.config.Labels["org.opencontainers.image.revision"]' "$config")"
check "--version names the labelled build date" "$(sed -n 's/^built: //p' <<<"$printed")" \
  "$(jq -r '.config.Labels["org.opencontainers.image.created"]' "$config")"
"$work/root/usr/local/bin/kafka-listener-injector" certs --service kafka-listener-injector \
  --namespace kafka-listener-injector --dns localhost --ip 127.0.0.1 --out "$work/tls" >/dev/null
chmod 0644 "$work/tls/tls.key"
admin=$((40000 + RANDOM % 20000))
entrypoint=$(jq -r '.config.Entrypoint[0]' "$config")
user=$(jq -r .config.User "$config")
# A private mount namespace: the root read-only, the certificate a read-only volume.
unshare --mount --propagation private --fork bash -c '
  set -e
  root=$1; tls=$2; user=$3; shift 3
  mount --bind "$root" "$root"
  mount --bind "$tls" "$root/etc/kafka-listener-injector/tls"
  mount -o remount,bind,ro "$root/etc/kafka-listener-injector/tls"
  mount -o remount,bind,ro "$root"
  exec chroot --userspec="$user" "$root" "$@"
' root "$work/root" "$work/tls" "$user" "$entrypoint" serve \
  --tls-cert /etc/kafka-listener-injector/tls/tls.crt --tls-key /etc/kafka-listener-injector/tls/tls.key \
  --listen 127.0.0.1:0 --admin-listen "127.0.0.1:$admin" >"$work/serve.log" 2>&1 &
pid=$!
ready=
for _ in $(seq 1 50); do
  ready=$(curl -fs "http://127.0.0.1:$admin/readyz") && break
  sleep 0.1
done
check "serve answers /readyz, as uid 65532 on a read-only root" "$ready" "ready"
# unshare's child is the entrypoint itself (bash and chroot exec it).
server=$(pgrep -P $pid | head -n 1)
check "it runs as 65532" "$(ps -o uid= -p "$server" | tr -d ' ')" 65532
# mountinfo, as the process sees it: field 5 is the mount point, field 6 its options.
check "its root is read-only" "$(awk '$5 == "/" {split($6, o, ","); print o[1]}' "/proc/$server/mountinfo" | tail -n 1)" ro
kill -TERM "$server"
wait $pid
check "SIGTERM ends it cleanly" "$?" 0
[ $failed -eq 0 ] || { cat "$work/serve.log"; exit 1; }
tests/image/verify.sh || exit 1
echo "image-test: size $(du -h "$out/kafka-listener-injector-"*.tar | cut -f1) (tarball), $(cat "$out/digest")"
