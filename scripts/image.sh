#!/usr/bin/env bash
# `npm run image`: builds the weft OCI image offline, from Debian's packages and this
# checkout only (no base image from a registry): a bookworm root file system made by
# mmdebstrap from the machine's own Debian sources (deb822) with only the Essential packages
# plus bpftool, iptables, iproute2 (the agent pins pods' neighbour entries), mount and
# libstdc++ (no apt: the image is not for apt-get), Node 24
# (the binary npm installed, its symbol tables stripped), the project with its production
# dependencies, the BPF objects and the native addon; imported with podman. Default user
# 65532 (the control plane runs so; the agent's pod spec asks for root). Skipped when an
# image for the same inputs exists (tag weft:<version>-<inputs hash>, also tagged
# weft:<version>). Prints the image reference on stdout; progress and the size on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '[image] %s\n' "$*" >&2; }

export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/scripts/containers.conf}"
for tool in mmdebstrap podman strip; do
  command -v "$tool" >/dev/null || { say "$tool is missing (Debian: apt-get install mmdebstrap podman runc binutils; npm run bootstrap installs them)"; exit 1; }
done
[ -f bpf/build/redirect.bpf.o ] && [ -f bpf/build/splice.bpf.o ] && [ -f native/build/Release/weft_native.node ] || { say "build outputs missing: run npm run bootstrap"; exit 1; }

version=$(node_modules/.bin/node -p 'require("./package.json").version')
# Inputs: every tracked file the image copies, the lockfile, the build outputs, this script.
hash=$( { git ls-files -s src bin package.json package-lock.json scripts/image.sh; sha256sum bpf/build/redirect.bpf.o bpf/build/splice.bpf.o bpf/build/bpf-ids.txt native/build/Release/weft_native.node node_modules/node/bin/node; git diff HEAD -- src bin package.json; } | sha256sum | cut -c1-12)
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
cp bpf/build/redirect.bpf.o bpf/build/splice.bpf.o bpf/build/bpf-ids.txt "$stage/bpf/build/"
cp native/build/Release/weft_native.node "$stage/native/build/Release/"
(cd "$stage" && npm ci --omit=dev --offline --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
# What no running process reads: source maps, type declarations, TypeScript sources (Node
# does not strip types under node_modules), docs (licences stay), packages' own tests and
# benchmarks, the Bare runtime's stand-ins for Node's built-ins (bare-*, chosen only under
# the "bare" import condition), OpenTelemetry's bundler builds (build/esm, build/esnext:
# only the "esnext"/"module" conditions Node never sets pick them), and cytoscape beyond
# the one minified file the dashboard serves.
nm="$stage/node_modules"
find "$nm" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.md' -o -name '*.markdown' \) ! -iname 'licen[cs]e*' -delete
find "$nm" -mindepth 2 -maxdepth 3 -type d \( -name test -o -name tests -o -name __tests__ -o -name benchmark -o -name benchmarks -o -name docs -o -name example -o -name examples \) \
  -exec test -f '{}/../package.json' \; -prune -exec rm -rf '{}' +
rm -rf "$nm"/bare-* "$nm"/@opentelemetry/*/build/esm "$nm"/@opentelemetry/*/build/esnext
find "$nm/cytoscape" -mindepth 1 -maxdepth 1 ! -name dist ! -name package.json ! -iname 'licen[cs]e*' -exec rm -rf '{}' +
find "$nm/cytoscape/dist" -type f ! -name cytoscape.min.js -delete
# bin/weft runs node_modules/node/bin/node: the one Node 24, without its debug info and
# symbol tables (15 MB; addons link against the dynamic symbols, which stay).
mkdir -p "$nm/node/bin"
strip --strip-all -o "$nm/node/bin/node" node_modules/node/bin/node
ln -s /opt/weft/bin/weft "$work/usr/local/bin/weft"

sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
say "root file system: mmdebstrap bookworm (Essential packages only) from $sources"
# merged-usr by mmdebstrap's hook rather than the usrmerge package, which would pull in perl.
# Node carries its own CA store and the service-account CA comes from the pod's volume, so
# no ca-certificates (and no openssl with it). After installing: what only the package tools
# need (perl, debconf, dpkg's file lists; its status file stays for image scanners), and
# glibc's iconv modules, which nothing here loads.
mmdebstrap --quiet --variant=essential --mode=root --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include=iptables,iproute2,bpftool,mount,libstdc++6 \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='echo "nonroot:x:65532:" >> "$1/etc/group"' \
  --customize-hook='echo "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"' \
  --customize-hook="sync-in '$work/opt' /opt" \
  --customize-hook="sync-in '$work/usr/local/bin' /usr/local/bin" \
  --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt "$1"/var/log/* "$1"/var/lib/dpkg/info "$1"/var/lib/dpkg/*-old' \
  --customize-hook='rm -rf "$1"/usr/share/perl* "$1"/usr/lib/x86_64-linux-gnu/perl* "$1"/usr/bin/perl* "$1"/usr/share/debconf "$1"/usr/lib/x86_64-linux-gnu/gconv' \
  bookworm "$work/rootfs.tar" "$sources"
say "podman import"
podman import --quiet \
  --change 'ENTRYPOINT ["/opt/weft/bin/weft"]' --change 'CMD ["--help"]' --change 'USER 65532:65532' --change 'WORKDIR /' \
  --change "LABEL org.opencontainers.image.title=weft org.opencontainers.image.version=$version" \
  "$work/rootfs.tar" "$ref" >/dev/null
podman tag "$ref" "localhost/weft:$version"
say "built $ref: $(podman image inspect --format '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1e6}')"
echo "$ref"
