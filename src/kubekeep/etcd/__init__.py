"""etcd layer: a minimal v3 gRPC client, verified snapshot streaming, offline snapshot
metadata (bbolt parsing) and data-directory restore through etcdutl."""
