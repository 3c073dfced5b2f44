#!/bin/sh
# Regenerate remote_pb2.py and push_pb2.py from the .proto files beside this script.
# Needs grpcio-tools (python -m pip install grpcio-tools), best in a throwaway venv; the generated files
# are committed so the service itself needs only the protobuf runtime. The protos are registered under
# their path from the repository root, so they cannot clash by file name with other protos in the pool.
set -eu
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m grpc_tools.protoc -I. --python_out=. \
    service/proto/remote.proto service/proto/push.proto
