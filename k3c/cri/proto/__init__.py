"""Generated protobuf/gRPC modules for the CRI and containerd APIs k3c talks to.

The ``*.proto`` files here are k3c's own subsets of the upstream protocols (same package,
message and field names and numbers, so the wire format and gRPC method paths match);
``scripts/gen-protos`` regenerates the ``*_pb2.py``/``*_pb2_grpc.py`` modules from them.
"""
