#!/usr/bin/env bash
# Regenerate the Python stubs of the gRPC API from proto/ into src/raptor/api/proto/.
#
#   bash scripts/gen_proto.sh        (or: make proto)
#
# Needs grpcio-tools (the `dev` extra). The .proto files keep upstream's file names
# (core/v1alpha1/*.proto: they are part of the descriptors that reflection serves), so protoc
# writes `from core.v1alpha1 import ...`; the imports are rewritten to
# `raptor.api.proto.core.v1alpha1` so the stubs live inside the package. The generated code
# checks the protobuf/grpcio runtime it runs with: keep the lower bounds in pyproject.toml at
# least at the versions printed below.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="$root/src/raptor/api/proto"
pkg_dir="$out/core/v1alpha1"

rm -rf "$out/core"
mkdir -p "$pkg_dir"

"$python" -m grpc_tools.protoc \
  -I "$root/proto" \
  --python_out="$out" \
  --pyi_out="$out" \
  --grpc_python_out="$out" \
  "$root"/proto/core/v1alpha1/*.proto

# Make the generated modules import as raptor.api.proto.core.v1alpha1.*
sed -i -E 's/^from core\.v1alpha1 import /from raptor.api.proto.core.v1alpha1 import /' \
  "$pkg_dir"/*.py "$pkg_dir"/*.pyi

# The service has no servicer subclass here (server/grpc.py registers its own handlers), so
# only the api module needs a grpc stub; types.proto has no service.
rm -f "$pkg_dir/types_pb2_grpc.py"

cat > "$out/__init__.py" <<'PY'
"""Generated protobuf/gRPC stubs of the ``core.v1alpha1`` API (``proto/`` at the repo root).

Do not edit: regenerate with ``make proto`` (``scripts/gen_proto.sh``). Only
``core.v1alpha1.api_pb2_grpc`` imports ``grpc``; the message modules need only ``protobuf``.
"""
PY
printf '"""Generated: do not edit."""\n' > "$out/core/__init__.py"
printf '"""Generated from proto/core/v1alpha1/*.proto: do not edit (make proto)."""\n' \
  > "$pkg_dir/__init__.py"

"$python" - <<'PY'
import grpc_tools, importlib.metadata as md
print("generated with grpcio-tools", md.version("grpcio-tools"), "protobuf", md.version("protobuf"))
PY
