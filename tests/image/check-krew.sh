#!/usr/bin/env bash
# check-krew.sh MANIFEST DIR WORK: installs the plugin of a krew manifest as krew would, from
# DIR/<the file its uri names> instead of the download: the archive's sha256 must be the one the
# manifest states, the `files` it lists must be in it, and the `bin`, run as
# kubectl-kafka_listeners, must print the version and revision of this build. Prints `ok` lines;
# exits 1 with an `Error:` line at the first fault.
set -euo pipefail
manifest=$1 dir=$2 work=$3
die() { echo "Error: $*" >&2; exit 1; }
[ -f "$manifest" ] || die "$manifest is missing (make image writes it)"
mkdir -p "$work"
# name, version, then per platform: os/arch, uri, sha256, bin, and the files as from=to.
python3 - "$manifest" >"$work/manifest.txt" <<'PY'
import sys, yaml
m = yaml.safe_load(open(sys.argv[1]))
assert m["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and m["kind"] == "Plugin"
print(m["metadata"]["name"], m["spec"]["version"])
for p in m["spec"]["platforms"]:
    labels = p["selector"]["matchLabels"]
    files = " ".join(f"{f['from']}={f['to']}" for f in p["files"])
    print(f"{labels['os']}/{labels['arch']} {p['uri']} {p['sha256']} {p['bin']} {files}")
PY
read -r name version <"$work/manifest.txt"
[ "$name" == kafka-listeners ] || die "the plugin is named $name, not kafka-listeners"
want=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ "$version" == "v$want" ] || die "the manifest's version $version is not v$want"
tail -n +2 "$work/manifest.txt" | while read -r platform uri sha256 bin files; do
  archive=$dir/${uri##*/}
  [ -f "$archive" ] || die "$platform: $archive (named by $uri) is missing"
  actual=$(sha256sum "$archive" | cut -d' ' -f1)
  [ "$actual" == "$sha256" ] || die "$platform: sha256 $sha256 in the manifest, $actual for $archive"
  echo "  ok   krew $platform: sha256 of ${uri##*/} is the manifest's ($sha256)"
  unpacked=$work/$platform/unpacked installed=$work/$platform/plugin
  mkdir -p "$unpacked" "$installed" "$work/$platform/bin"
  tar -xzf "$archive" -C "$unpacked"
  for file in $files; do
    [ -e "$unpacked/${file%%=*}" ] || die "$platform: the archive has no ${file%%=*}"
    cp -r "$unpacked/${file%%=*}" "$installed/${file#*=}"
  done
  [ -x "$installed/$bin" ] || die "$platform: bin $bin is not an executable of the archive"
  # krew links the bin as kubectl-<name, - as _>: the name kubectl finds the plugin by.
  ln -sf "$installed/$bin" "$work/$platform/bin/kubectl-${name//-/_}"
  printed=$("$work/$platform/bin/kubectl-${name//-/_}" --version)
  [ "$(head -n 1 <<<"$printed")" == "kubectl kafka-listeners $want" ] \
    || die "$platform: kubectl-${name//-/_} --version printed '$printed'"
  echo "  ok   krew $platform: kubectl kafka-listeners --version: $(tr '\n' ' ' <<<"$printed")"
done
