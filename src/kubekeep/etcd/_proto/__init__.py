"""Generated etcd protobuf/gRPC modules (see regen.sh); do not edit the *_pb2 files."""
