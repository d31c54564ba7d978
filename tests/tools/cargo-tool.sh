#!/usr/bin/env bash
# cargo-tool.sh cargo-cyclonedx: installs the cargo tool once (version pinned here) into
# ~/.cache/kafka-listener-injector/tools and prints its path.
set -euo pipefail
case "${1:-}" in
  cargo-cyclonedx) version=0.5.9 ;;
  *) echo "usage: $0 cargo-cyclonedx" >&2; exit 2 ;;
esac
root=$HOME/.cache/kafka-listener-injector/tools/$1-$version
if [ ! -x "$root/bin/$1" ]; then
  echo "cargo-tool: installing $1 $version (once)" >&2
  cargo install "$1@$version" --locked --root "$root" >&2
fi
echo "$root/bin/$1"
