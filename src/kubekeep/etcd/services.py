"""Typed faces of the etcd gRPC services kubekeep calls.

The stubs grpc_tools generates (``_proto/rpc_pb2_grpc.py``) carry no annotations: each is a
class with one multi-callable attribute per method. These protocols say what those attributes
are, so that requests and responses are type-checked where they are used.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from ._proto import rpc_pb2, rpc_pb2_grpc


class Maintenance(Protocol):
    Status: grpc.UnaryUnaryMultiCallable[rpc_pb2.StatusRequest, rpc_pb2.StatusResponse]
    Snapshot: grpc.UnaryStreamMultiCallable[rpc_pb2.SnapshotRequest, rpc_pb2.SnapshotResponse]


class Cluster(Protocol):
    MemberList: grpc.UnaryUnaryMultiCallable[rpc_pb2.MemberListRequest, rpc_pb2.MemberListResponse]


class KV(Protocol):
    Range: grpc.UnaryUnaryMultiCallable[rpc_pb2.RangeRequest, rpc_pb2.RangeResponse]
    Put: grpc.UnaryUnaryMultiCallable[rpc_pb2.PutRequest, rpc_pb2.PutResponse]
    DeleteRange: grpc.UnaryUnaryMultiCallable[rpc_pb2.DeleteRangeRequest, rpc_pb2.DeleteRangeResponse]
    Txn: grpc.UnaryUnaryMultiCallable[rpc_pb2.TxnRequest, rpc_pb2.TxnResponse]


class Watch(Protocol):
    Watch: grpc.StreamStreamMultiCallable[rpc_pb2.WatchRequest, rpc_pb2.WatchResponse]


class Lease(Protocol):
    LeaseGrant: grpc.UnaryUnaryMultiCallable[rpc_pb2.LeaseGrantRequest, rpc_pb2.LeaseGrantResponse]


def maintenance(channel: grpc.Channel) -> Maintenance:
    return rpc_pb2_grpc.MaintenanceStub(channel)


def cluster(channel: grpc.Channel) -> Cluster:
    return rpc_pb2_grpc.ClusterStub(channel)


def kv(channel: grpc.Channel) -> KV:
    return rpc_pb2_grpc.KVStub(channel)


def watch(channel: grpc.Channel) -> Watch:
    return rpc_pb2_grpc.WatchStub(channel)


def lease(channel: grpc.Channel) -> Lease:
    return rpc_pb2_grpc.LeaseStub(channel)
