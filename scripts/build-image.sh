#!/usr/bin/env bash
# Builds the sidecar image from the static binary `make sidecar` produced.
# usage: scripts/build-image.sh [TAG]   (env: ARCH=x86_64|aarch64, CONTAINER_TOOL)
# Uses docker when its daemon answers, else podman (then with
# scripts/containers.conf unless CONTAINERS_CONF names another).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=${ARCH:-x86_64}
tag=${1:-logdrop-sidecar:latest}
case $arch in
  x86_64) platform=linux/amd64 ;;
  aarch64) platform=linux/arm64 ;;
  *) echo "ARCH must be x86_64 or aarch64, not $arch" >&2; exit 2 ;;
esac
binary="$root/target/sidecar-$arch-unknown-linux-musl"
[ -x "$binary" ] || { echo "$binary is missing: run make sidecar SIDECAR_TARGET=$arch-unknown-linux-musl" >&2; exit 2; }
bundle=$("$root/.venv/bin/python" -c 'import certifi; print(certifi.where())')
context="$root/target/image/$arch"
rm -rf "$context" && mkdir -p "$context"
cp "$binary" "$context/" && cp "$bundle" "$context/ca-certificates.crt"
tool=${CONTAINER_TOOL:-$(docker info >/dev/null 2>&1 && echo docker || echo podman)}
extra=()
if [ "$tool" = podman ]; then
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/scripts/containers.conf}
  extra=(--layers=false)  # no intermediate images left behind
fi
"$tool" build "${extra[@]}" --quiet --platform "$platform" --build-arg "ARCH=$arch" -t "$tag" -f "$root/Dockerfile" "$context"
