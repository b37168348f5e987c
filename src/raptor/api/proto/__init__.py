"""Generated protobuf/gRPC stubs of the ``core.v1alpha1`` API (``proto/`` at the repo root).

Do not edit: regenerate with ``make proto`` (``scripts/gen_proto.sh``). Only
``core.v1alpha1.api_pb2_grpc`` imports ``grpc``; the message modules need only ``protobuf``.
"""
