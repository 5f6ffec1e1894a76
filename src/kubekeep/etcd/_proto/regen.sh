#!/bin/sh
# Regenerate the Python protobuf/gRPC modules from the trimmed etcd .proto files here.
# Needs grpcio-tools (pip install grpcio-tools); its bundled protoc decides the minimum
# protobuf runtime the output needs: keep pyproject's `protobuf` and `grpcio` lower bounds
# at or above the versions printed below.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)          # .../src
cd "$src"
python3 -m grpc_tools.protoc -I "$src" \
    --python_out="$src" --pyi_out="$src" --grpc_python_out="$src" \
    kubekeep/etcd/_proto/kv.proto kubekeep/etcd/_proto/rpc.proto
rm -f "$here/kv_pb2_grpc.py"               # kv.proto has no services
from_gen=$(sed -n 's/^# Protobuf Python Version: //p' "$here/rpc_pb2.py")
echo "generated for protobuf runtime >= $from_gen (same major);" \
     "$(grep -h '^GRPC_GENERATED_VERSION' "$here/rpc_pb2_grpc.py")"
