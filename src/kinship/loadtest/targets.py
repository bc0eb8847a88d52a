"""From `SERVICE/METHOD` to the request and response message classes.

The suite's own contracts (kinship.v1) and grpc.health.v1 are known from the
generated descriptors; any other unary method is looked up through the server's
reflection service, as ghz does, so the tool works against any gRPC server.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor

from kinship.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class Method:
    """One unary method: its HTTP/2 path and message classes."""

    service: str
    name: str
    request_class: type
    response_class: type

    @property
    def full_name(self) -> str:
        return f"{self.service}/{self.name}"

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


def _load_known_contracts() -> None:
    # Importing the generated modules registers their descriptors in the default pool.
    from grpc_health.v1 import health_pb2  # noqa: F401

    from kinship.v1 import embedder_pb2, indexer_pb2, ranker_pb2  # noqa: F401


def split_call(call: str) -> tuple[str, str]:
    """'kinship.v1.Embedder/Embed' (or 'kinship.v1.Embedder.Embed') -> ('kinship.v1.Embedder', 'Embed')."""
    text = call.strip().lstrip("/")
    if "/" in text:
        service, _, method = text.rpartition("/")
    else:
        service, _, method = text.rpartition(".")
    if not service or not method:
        raise InvalidArgument(
            f"--call {call!r} must name SERVICE/METHOD, for example kinship.v1.Embedder/Embed "
            "or grpc.health.v1.Health/Check",
            field="call",
        )
    return service, method


def _method_from_pool(pool: descriptor_pool.DescriptorPool, service: str, method: str) -> Method | None:
    try:
        service_descriptor = pool.FindServiceByName(service)
    except KeyError:
        return None
    found: MethodDescriptor | None = service_descriptor.methods_by_name.get(method)
    if found is None:
        names = ", ".join(sorted(service_descriptor.methods_by_name))
        raise InvalidArgument(f"{service} has no method {method!r}; it has {names}", field="call")
    if found.client_streaming or found.server_streaming:
        raise InvalidArgument(
            f"{service}/{method} is a streaming method; the load tool drives unary methods", field="call"
        )
    return Method(
        service,
        method,
        message_factory.GetMessageClass(found.input_type),
        message_factory.GetMessageClass(found.output_type),
    )


def resolve(call: str, channel: grpc.Channel | None = None) -> Method:
    """The method named by `call`: from the generated contracts, else by reflection over `channel`."""
    service, method = split_call(call)
    _load_known_contracts()
    known = _method_from_pool(descriptor_pool.Default(), service, method)
    if known is not None:
        return known
    if channel is None:
        raise InvalidArgument(f"unknown service {service!r} and no server to ask by reflection", field="call")
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    try:
        reflected = _method_from_pool(pool, service, method)
    except grpc.RpcError as exc:
        raise InvalidArgument(
            f"{service} is not one of the suite's services and the server's reflection did not answer "
            f"({exc.code().name}); pass a method the server offers",
            field="call",
        ) from exc
    if reflected is None:
        offered = ", ".join(sorted(database.get_services()))
        raise InvalidArgument(f"the server does not offer {service}; it offers {offered}", field="call")
    return reflected
