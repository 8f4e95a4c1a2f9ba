#!/bin/sh
# Regenerate the committed gRPC hook stubs from hook.proto (tusd's, see its header).
# Needs grpcio-tools; the generated code requires protobuf at least as new as the one bundled
# with grpcio-tools, so keep the `hooks` extra's protobuf floor in pyproject.toml in step.
set -eu
cd "$(dirname "$0")/../src"
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. pytusd/hooks/proto/hook.proto
