#!/usr/bin/env bash
# Brings a fresh Debian machine (or a fresh clone) to the point where `npm start`,
# `npm test` and `npm run bench` can run. Each step checks first, so a second run
# does no needless work.
#
#   bash scripts/bootstrap.sh [start]
#
# `start` (what `npm start` runs) installs only the system packages the demo itself needs
# (the BPF toolchain, iproute2, iptables, curl, ...), so a newcomer's first run does not wait
# for the test and benchmark tools (Chromium, Prometheus, podman, HAProxy, ...): on a fresh
# Debian 12 those are most of the download. Without an argument: everything.
set -euo pipefail
profile=${1:-all}
case "$profile" in
  start|all) ;;
  *) printf '[bootstrap] unknown profile %s (expected: start, or nothing for all)\n' "$profile" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. System packages. Keyed by a command each provides; installed only when missing.
# What the demo (and the agent, the control plane, the simulator) needs:
declare -A pkg_for=(
  [clang]=clang [bpftool]=bpftool [ip]=iproute2 [iptables]=iptables [curl]=curl
  [nsenter]=util-linux [ps]=procps [make]=make [g++]=g++ [python3]=python3 [openssl]=openssl
)
# What the tests and benchmarks add: real clients and servers, Prometheus, Chromium for the
# dashboard, the image build.
if [ "$profile" = all ]; then
  pkg_for+=(
    [llvm-strip]=llvm [tcpdump]=tcpdump [haproxy]=haproxy [wrk]=wrk [iperf3]=iperf3
    [sockperf]=sockperf [promtool]=prometheus [chromium]=chromium [strace]=strace
    [mmdebstrap]=mmdebstrap [podman]=podman [runc]=runc [unzip]=unzip [strip]=binutils [h2load]=nghttp2-client
  )
fi
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_for[$cmd]}")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
# Python modules, keyed by an import: the dual-stack capture tests and the L7 tests use a real
# gRPC client and server (grpc) and a real WebSocket client and server (websockets).
# Debian's module goes with Debian's interpreter, which a pyenv python3 may shadow.
declare -A pymod_pkg=()
[ "$profile" = all ] && pymod_pkg=([grpc]=python3-grpcio [websockets]=python3-websockets)
for mod in "${!pymod_pkg[@]}"; do
  found=no
  for py in python3 /usr/bin/python3; do "$py" -c "import $mod" >/dev/null 2>&1 && found=yes; done
  [ "$found" = yes ] || missing+=("${pymod_pkg[$mod]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing system packages (${missing[*]}) and not root: install them with apt-get, or run as root"
  else
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# 2. npm dependencies, including Node 24 itself (the `node` dev dependency).
if [ ! -x node_modules/node/bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund >&2
fi

# 3. Build outputs: BPF objects and the native addon. make skips what is up to date.
if [ -f bpf/Makefile ] && command -v clang >/dev/null 2>&1 && command -v bpftool >/dev/null 2>&1; then
  make -s -C bpf >&2
fi
if [ -f native/binding.gyp ]; then
  if [ ! -f native/build/Release/weft_native.node ] || [ -n "$(find native -maxdepth 1 -newer native/build/Release/weft_native.node \( -name '*.c' -o -name '*.h' -o -name binding.gyp \))" ]; then
    say "building native addon"
    # N-API is ABI-stable across Node versions, so any installed Node headers will do.
    nodedir_flag=()
    [ -f /usr/include/node/node_api.h ] && nodedir_flag=(--nodedir=/usr)
    (cd native && PATH="$root/node_modules/.bin:$PATH" node-gyp rebuild "${nodedir_flag[@]}" >&2)
  fi
fi
