#!/usr/bin/env bash
# `npm run image`: builds the weft OCI image offline, from Debian's packages and this
# checkout only (no base image from a registry): a bookworm minbase root file system made by
# mmdebstrap from the machine's own Debian sources (deb822), plus bpftool, iptables, Node 24
# (the binary npm installed, stripped), the project with its production dependencies, the
# BPF objects and the native addon; imported with podman. Default user 65532 (the control
# plane runs so; the agent's pod spec asks for root). Skipped when an image for the same
# inputs exists (tag weft:<version>-<inputs hash>, also tagged weft:<version>). What only the
# package tools need at run time (perl, apt's lists, docs) is left out: the image is not for apt-get.
# Prints the image reference on stdout; progress and the size on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '[image] %s\n' "$*" >&2; }

export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/scripts/containers.conf}"
for tool in mmdebstrap podman strip; do
  command -v "$tool" >/dev/null || { say "$tool is missing (Debian: apt-get install mmdebstrap podman runc binutils; npm run bootstrap installs them)"; exit 1; }
done
[ -f bpf/build/redirect.bpf.o ] && [ -f native/build/Release/weft_native.node ] || { say "build outputs missing: run npm run bootstrap"; exit 1; }

version=$(node_modules/.bin/node -p 'require("./package.json").version')
# Inputs: every tracked file the image copies, the lockfile, the build outputs, this script.
hash=$( { git ls-files -s src bin package.json package-lock.json scripts/image.sh; sha256sum bpf/build/redirect.bpf.o bpf/build/bpf-ids.txt native/build/Release/weft_native.node node_modules/node/bin/node; git diff HEAD -- src bin package.json; } | sha256sum | cut -c1-12)
ref="localhost/weft:$version-$hash"
if podman image exists "$ref"; then
  say "up to date: $ref ($(podman image inspect --format '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1e6}'))"
  echo "$ref"
  exit 0
fi

work=$(mktemp -d /var/tmp/weft-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
stage="$work/opt/weft"
mkdir -p "$stage/bpf/build" "$stage/native/build/Release" "$work/usr/local/bin"
say "staging the project and its production dependencies"
cp -a src bin package.json package-lock.json "$stage/"
cp bpf/build/redirect.bpf.o bpf/build/bpf-ids.txt "$stage/bpf/build/"
cp native/build/Release/weft_native.node "$stage/native/build/Release/"
(cd "$stage" && npm ci --omit=dev --offline --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
# What no running process reads: source maps, type declarations, docs (licences stay).
find "$stage/node_modules" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' -o -name '*.markdown' \) ! -iname 'licen[cs]e*' -delete
# bin/weft runs node_modules/node/bin/node: the one Node 24, stripped of its debug info.
mkdir -p "$stage/node_modules/node/bin"
strip --strip-debug -o "$stage/node_modules/node/bin/node" node_modules/node/bin/node
ln -s /opt/weft/bin/weft "$work/usr/local/bin/weft"

sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
say "root file system: mmdebstrap bookworm minbase from $sources"
mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
  --include=ca-certificates,iptables,bpftool,libstdc++6 \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='chroot "$1" groupadd --gid 65532 nonroot' \
  --customize-hook='chroot "$1" useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot' \
  --customize-hook="sync-in '$work/opt' /opt" \
  --customize-hook="sync-in '$work/usr/local/bin' /usr/local/bin" \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
  --customize-hook='rm -rf "$1"/usr/share/perl "$1"/usr/lib/x86_64-linux-gnu/perl "$1"/usr/lib/x86_64-linux-gnu/gconv' \
  bookworm "$work/rootfs.tar" "$sources"
say "podman import"
podman import --quiet \
  --change 'ENTRYPOINT ["/opt/weft/bin/weft"]' --change 'CMD ["--help"]' --change 'USER 65532:65532' --change 'WORKDIR /' \
  --change "LABEL org.opencontainers.image.title=weft org.opencontainers.image.version=$version" \
  "$work/rootfs.tar" "$ref" >/dev/null
podman tag "$ref" "localhost/weft:$version"
say "built $ref: $(podman image inspect --format '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1e6}')"
echo "$ref"
