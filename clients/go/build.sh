#!/usr/bin/env bash
# Build the Go client with Debian's toolchain (go 1.19, grpc-go 1.33, golang/protobuf 1.3 from
# /usr/share/gocode), in GOPATH mode: no module downloads, works offline.
#
#   clients/go/build.sh            build bin/grpo-go-example (and bin/protoc-gen-go)
#   clients/go/build.sh gen        regenerate gen/**/*.pb.go from protos/
#   clients/go/build.sh check-gen  exit 1 when the committed gen/ differs from a fresh generation
#   clients/go/build.sh test       build, then `go test` the client package and the example (no server needed)
#
# Why the old generator: Debian's protoc-gen-go 1.28 emits code for google.golang.org/protobuf and the
# new grpc plugin API, which compiles against grpc-go 1.33 but panics at run time. The generator in
# github.com/golang/protobuf 1.3 (`--go_out=plugins=grpc:`) matches the libraries Debian ships.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="$HERE/bin"
IMPORT_PATH="github.com/grpo-service/grpo/clients/go"   # the protos' go_package prefix
SYSTEM_GOPATH="${SYSTEM_GOPATH:-/usr/share/gocode}"

for tool in go protoc; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found; run clients/setup.sh" >&2; exit 2; }
done
for pkg in google.golang.org/grpc github.com/golang/protobuf/protoc-gen-go/generator \
           google.golang.org/genproto/googleapis/rpc/errdetails; do
  # protoc-gen-go/generator exists only in golang/protobuf 1.3 (golang-github-golang-protobuf-1-3-dev).
  [ -d "$SYSTEM_GOPATH/src/$pkg" ] || {
    echo "build.sh: $pkg not found in $SYSTEM_GOPATH; run clients/setup.sh" >&2; exit 2; }
done

# A private GOPATH whose src/ maps the go_package import path onto this folder (a symlink), ahead of
# Debian's shared one.
mkdir -p "$BIN"
GOPATH_DIR="$BIN/gopath"
mkdir -p "$GOPATH_DIR/src/$(dirname "$IMPORT_PATH")"
ln -sfn "$HERE" "$GOPATH_DIR/src/$IMPORT_PATH"
export GOPATH="$GOPATH_DIR:$SYSTEM_GOPATH" GO111MODULE=off
export GOCACHE="${GOCACHE:-$BIN/cache}"

build_generator() {
  [ -x "$BIN/protoc-gen-go" ] || go build -o "$BIN/protoc-gen-go" github.com/golang/protobuf/protoc-gen-go
}

# generate OUT_DIR: write gen/ for every proto the trainer API needs into OUT_DIR.
generate() {
  local out="$1"
  mkdir -p "$out"
  # The well-known types map to golang/protobuf's ptypes (protoc's own go_package names the v2 module).
  local m="Mgoogle/protobuf/timestamp.proto=github.com/golang/protobuf/ptypes/timestamp"
  protoc -I "$REPO/protos" --plugin=protoc-gen-go="$BIN/protoc-gen-go" \
    --go_out="plugins=grpc,paths=source_relative,$m:$out" \
    grpo/reward/v1/reward.proto
  protoc -I "$REPO/protos" --plugin=protoc-gen-go="$BIN/protoc-gen-go" \
    --go_out="plugins=grpc,paths=source_relative,$m:$out" \
    grpo/trainer/v1/trainer.proto
}

build_example() {
  cd "$GOPATH_DIR/src/$IMPORT_PATH"
  go vet "$IMPORT_PATH/grpoclient" "$IMPORT_PATH/cmd/grpo-go-example"
  go build -o "$BIN/grpo-go-example" "$IMPORT_PATH/cmd/grpo-go-example"
  echo "built $BIN/grpo-go-example"
}

case "${1:-build}" in
  build) build_generator; build_example ;;
  gen) build_generator; rm -rf "$HERE/gen"; generate "$HERE/gen"; echo "wrote $HERE/gen" ;;
  check-gen)
    build_generator
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    generate "$tmp"
    if ! diff -r "$tmp" "$HERE/gen" >/dev/null; then
      diff -r "$tmp" "$HERE/gen" | head -20 >&2
      echo "clients/go/gen is stale: run clients/go/build.sh gen" >&2; exit 1
    fi
    echo "clients/go/gen is up to date" ;;
  test) build_generator; build_example; go test "$IMPORT_PATH/grpoclient" "$IMPORT_PATH/cmd/grpo-go-example" ;;
  *) echo "usage: $0 [build|gen|check-gen|test]" >&2; exit 2 ;;
esac
