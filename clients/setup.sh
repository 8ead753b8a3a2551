#!/usr/bin/env bash
# Install what the TypeScript and Go clients (and their tests) need on a Debian 12 machine. Idempotent:
# installs only what is missing. Run as root or with sudo available.
#
#   clients/setup.sh          Debian packages for Go + protoc, then `npm ci` in clients/typescript
#   clients/setup.sh --build  also compile both clients (tsc; clients/go/build.sh)
#
# Debian packages (why each):
#   golang-go                               go 1.19
#   golang-google-grpc-dev                  grpc-go 1.33 in /usr/share/gocode (GOPATH mode, offline)
#   golang-github-golang-protobuf-1-3-dev   golang/protobuf 1.3: the runtime the generated code uses and the
#                                           source of the old protoc-gen-go that build.sh compiles
#   golang-google-genproto-dev              google.golang.org/genproto .../rpc/errdetails (BadRequest, RetryInfo)
#   protobuf-compiler                       protoc 3.21
#   libprotobuf-dev                         the well-known types' .proto files (google/protobuf/timestamp.proto),
#                                           only a Recommends of protobuf-compiler, so --no-install-recommends skips it
#   nodejs npm                              only when `node` is missing (Node >= 18 runs the TypeScript client)
# Debian's own protoc-gen-go package is NOT needed: its 1.28 output panics with grpc-go 1.33.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PKGS=(golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-3-dev golang-google-genproto-dev protobuf-compiler libprotobuf-dev)
command -v node >/dev/null && command -v npm >/dev/null || PKGS+=(nodejs npm)

missing=()
if ! command -v dpkg-query >/dev/null; then
  # Not Debian: nothing to install from here; check the tools instead of the packages (build.sh checks the
  # Go packages under SYSTEM_GOPATH when it runs).
  tools=()
  for tool in go protoc node npm; do command -v "$tool" >/dev/null || tools+=("$tool"); done
  if [ ${#tools[@]} -gt 0 ]; then
    echo "clients/setup.sh: no dpkg-query here (not Debian), so nothing is installed; missing: ${tools[*]}." >&2
    echo "  Provide them (Go 1.19 with grpc-go 1.33 and golang/protobuf 1.3 sources in SYSTEM_GOPATH, protoc," >&2
    echo "  Node.js >= 18 with npm): see docs/clients.md, 'Setup on a fresh machine'." >&2
    exit 2
  fi
else
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "clients/setup.sh: apt-get install ${missing[*]}"
  start=$SECONDS
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  echo "clients/setup.sh: Debian packages installed in $((SECONDS - start)) s"
fi

ts="$HERE/typescript"
if [ ! -x "$ts/node_modules/.bin/tsc" ] || [ "$ts/package-lock.json" -nt "$ts/node_modules/.package-lock.json" ]; then
  start=$SECONDS
  (cd "$ts" && npm ci --no-audit --no-fund)
  echo "clients/setup.sh: npm ci (clients/typescript) took $((SECONDS - start)) s"
fi

if [ "${1:-}" = "--build" ]; then
  (cd "$ts" && node_modules/.bin/tsc -p tsconfig.json)
  "$HERE/go/build.sh" build
fi
