"""A real gRPC hook server for tests: tusd's ``proto.HookHandler`` service on loopback (grpcio).

It speaks the wire protocol of tusd's hook.proto through the compiled messages pytusd ships, as a
hook server written for tusd would; it records each request with its call metadata and answers
from ``plans``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from pytusd.hooks.proto import hook_pb2

Plan = Callable[[hook_pb2.HookRequest], hook_pb2.HookResponse]


@dataclass
class GrpcCall:
    type: str
    request: hook_pb2.HookRequest
    metadata: dict[str, str]


@dataclass
class GrpcHookServer:
    """``plans[type]``: a callable answering the request, or ``{"fail_times": n}`` (UNAVAILABLE n
    times, then an empty answer) or ``{"abort": grpc.StatusCode}``."""

    plans: dict[str, Any] = field(default_factory=dict)
    calls: list[GrpcCall] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: dict[str, int] = field(default_factory=dict)
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def of(self, kind: str) -> list[GrpcCall]:
        with self.lock:
            return [c for c in self.calls if c.type == kind]

    def _invoke(self, request: hook_pb2.HookRequest, context: grpc.ServicerContext) -> hook_pb2.HookResponse:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        with self.lock:
            self.calls.append(GrpcCall(request.type, request, metadata))
        plan = self.plans.get(request.type)
        if plan is None:
            return hook_pb2.HookResponse()
        if callable(plan):
            return plan(request)
        if "fail_times" in plan:
            with self.lock:
                done = self.failures.get(request.type, 0)
                self.failures[request.type] = done + 1
            if done < plan["fail_times"]:
                context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
            return hook_pb2.HookResponse()
        context.abort(plan["abort"], "planned failure")
        raise AssertionError("unreachable")

    @contextmanager
    def running(self, credentials: grpc.ServerCredentials | None = None, host: str = "127.0.0.1") -> Iterator[Any]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler(
            "proto.HookHandler",
            {
                "InvokeHook": grpc.unary_unary_rpc_method_handler(
                    self._invoke,
                    request_deserializer=hook_pb2.HookRequest.FromString,
                    response_serializer=hook_pb2.HookResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        if credentials is None:
            self.port = server.add_insecure_port(f"{host}:0")
        else:
            self.port = server.add_secure_port(f"{host}:0", credentials)
        server.start()
        try:
            yield self
        finally:
            server.stop(grace=None)
