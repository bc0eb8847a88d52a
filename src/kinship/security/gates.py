"""The security interceptor: parse, authenticate, authorise, bind purpose, limit, bind the call, audit.

`SecurityInterceptor` is one `grpc.aio.ServerInterceptor` for all four kinds of handler
(unary and streaming requests and responses), listed after the runtime's
`CallContextInterceptor` (which turns errors into status codes) by `build_interceptors`:

    the gates, in order -> the caller bound -> the handler -> the audit event

A gate is a small class with `async check(call, request, context)` that raises a
`KinshipError` to refuse; the gates run in order and share one `CallState`.

Per call, the binding sets what the rest of the code relies on:
- `tenancy.AUTHENTICATED_TENANT`: the tenant the caller is bound to (security on);
- `forwarding.FORWARDED`: identity, case id and purpose for calls to other services;
- `deadlines.CALL_DEADLINE`: narrowed to the configured maximum (less the answer margin),
  and the handler runs under that cap.

The audit event of an audited RPC (searches, record reads, enrolment, deletion) or
of any call a gate refused is written, fsynced, before the response leaves.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import structlog

from kinship.audit import checkpoints
from kinship.audit.trail import AuditTrail, FileSink, StreamSink, now_iso
from kinship.runtime import errors, grpc_errors
from kinship.runtime.deadlines import CALL_DEADLINE, work_deadline
from kinship.runtime.logs import get_logger
from kinship.runtime.tenancy import AUTHENTICATED_TENANT

from . import certs, forwarding, policy
from .policy import Identity
from .settings import audit_path, purpose_required, security_on, security_settings
from .tokens import TokenVerifier

log = get_logger("kinship.security")

#: Longest case id / purpose kept (they go into logs and the audit trail).
MAX_PURPOSE_CHARS = 200


@dataclass
class CallState:
    """What the gates learn about one call, for the gates after them and the audit event."""

    method: str
    metadata: dict[str, str]
    peer: str
    identity: Identity | None = None
    case_id: str = ""
    purpose: str = ""
    #: The caller's capped deadline (time.monotonic()), and the caller's own (None: it set none).
    deadline: float | None = None
    caller_deadline: float | None = None
    #: Streamed responses are capped per message, not as a whole (see CallInterceptor._streaming).
    streams_responses: bool = False
    refused_by: str | None = None
    #: The ids a streaming request named, for methods audited by what they change; collected as
    #: the messages pass, never the messages themselves (a bulk enrolment streams gigabytes).
    streamed_ids: dict[str, list[str]] = field(default_factory=lambda: {"person_ids": [], "record_ids": []})


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in details.invocation_metadata or ():
        if isinstance(value, str):
            out.setdefault(key.lower(), value)
    return out


# Gates ---------------------------------------------------------------------------


class Authenticate:
    """Who is calling: the verified client certificate, else a bearer token; delegation from the suite's services."""

    name = "authentication"

    def __init__(self, verifier: TokenVerifier | None, *, enforced: bool):
        self._verifier = verifier
        self._enforced = enforced

    def _from_certificate(self, context: grpc.aio.ServicerContext) -> Identity | None:
        pems = (context.auth_context() or {}).get("x509_pem_cert") or []
        if not pems:
            return None
        try:
            return certs.identity_from_pem(bytes(pems[0]))
        except certs.CertificateError as exc:
            raise errors.Unauthenticated(
                f"client certificate not accepted: {exc}", reason="CERTIFICATE_INVALID"
            ) from exc

    async def check(self, call: CallState, request: Any, context: grpc.aio.ServicerContext) -> None:
        if not self._enforced:
            call.identity = Identity(name="local", role="local", method="none")
            return
        identity = self._from_certificate(context)
        authorization = call.metadata.get("authorization", "")
        if identity is None and authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token or self._verifier is None:
                raise errors.Unauthenticated(
                    "only `authorization: Bearer <JWT>` is accepted, and only where token keys are configured",
                    reason="TOKEN_INVALID",
                )
            identity = self._verifier.verify(token.strip())
        if identity is None:
            raise errors.Unauthenticated(
                "no credentials: present a client certificate signed by the suite's CA (--tls-dir DIR --as NAME) "
                "or an `authorization: Bearer <JWT>` header",
                reason="NO_CREDENTIALS",
            )
        delegated = call.metadata.get(forwarding.ON_BEHALF_OF_KEY)
        if delegated:
            if identity.role != policy.SERVICE:
                raise errors.PermissionDenied(
                    "x-on-behalf-of is accepted only from the suite's own services (role service)",
                    reason="DELEGATION_REFUSED",
                )
            role = call.metadata.get(forwarding.ON_BEHALF_OF_ROLE_KEY, "")
            if role not in policy.ROLES:
                raise errors.PermissionDenied(
                    f"x-on-behalf-of-role {role!r} is not a known role", reason="DELEGATION_REFUSED"
                )
            tenant = call.metadata.get(forwarding.ON_BEHALF_OF_TENANT_KEY) or None
            identity = Identity(
                name=delegated[:128], role=role, tenant=tenant, method=identity.method, via=identity.name
            )
        call.identity = identity


class Authorise:
    """The permission table (`policy.PERMISSIONS`): deny what it does not name."""

    name = "authorisation"

    def __init__(self, *, enforced: bool):
        self._enforced = enforced

    async def check(self, call: CallState, request: Any, context: grpc.aio.ServicerContext) -> None:
        if not self._enforced:
            return
        identity = call.identity
        assert identity is not None
        if not policy.allowed(call.method, identity.role):
            allowed = ", ".join(policy.roles_for(call.method)) or "no role"
            raise errors.PermissionDenied(
                f"{identity.name} (role {identity.role}) may not call {call.method}; it needs role {allowed}",
                reason="ROLE_NOT_ALLOWED",
            )


class BindPurpose:
    """Searches, record reads and deletions state a case id and a purpose (x-case-id, x-purpose)."""

    name = "purpose"

    def __init__(self, *, required: bool):
        self._required = required

    async def check(self, call: CallState, request: Any, context: grpc.aio.ServicerContext) -> None:
        if not self._required or call.method not in policy.PURPOSE_BOUND:
            return
        missing = [
            k for k, v in ((forwarding.CASE_ID_KEY, call.case_id), (forwarding.PURPOSE_KEY, call.purpose)) if not v
        ]
        if missing:
            raise errors.PermissionDenied(
                f"{call.method.rsplit('/', 1)[-1]} needs a case id and a purpose: send metadata "
                f"{' and '.join(missing)} (kinship CLI: --case-id and --purpose)",
                reason="PURPOSE_REQUIRED",
            )


class RateLimit:
    """A token bucket per caller; the suite's own services are limited where their callers came in."""

    name = "rate limit"
    _MAX_CALLERS = 10_000

    def __init__(self, per_second: float, burst: int):
        self._rate = per_second
        self._burst = float(burst)
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    async def check(self, call: CallState, request: Any, context: grpc.aio.ServicerContext) -> None:
        identity = call.identity
        # Local plaintext mode has no caller to key on (and load tests run there).
        if self._rate <= 0 or identity is None or identity.method == "none":
            return
        if identity.via is not None or identity.role == policy.SERVICE:
            return
        key = identity.name
        now = time.monotonic()
        tokens, at = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self._rate
            raise errors.ResourceExhausted(
                f"{identity.name} exceeded its rate of {self._rate:g} calls per second; retry in {wait:.2f} s",
                reason="RATE_LIMITED",
                metadata={"retry_after_seconds": f"{wait:.3f}"},
            )
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > self._MAX_CALLERS:
            self._buckets.popitem(last=False)


class SizeLimits:
    """Largest top_k, top_n and batches one call may ask for."""

    name = "size limits"

    def __init__(self, *, max_top_k: int, max_top_n: int, max_batch: int):
        self._checks: dict[str, list[tuple[str, int, bool]]] = {
            "/kinship.v1.Indexer/Search": [("top_k", max_top_k, False), ("queries", max_batch, True)],
            "/kinship.v1.Embedder/EmbedBatch": [("items", max_batch, True)],
            "/kinship.v1.Indexer/Upsert": [("records", max_batch, True)],
            "/kinship.v1.Indexer/GetRecords": [("person_ids", max_batch, True)],
            "/kinship.v1.Indexer/Delete": [("person_ids", max_batch, True), ("record_ids", max_batch, True)],
            "/kinship.v1.KinshipRanker/FindRelatives": [("top_n", max_top_n, False)],
        }

    async def check(self, call: CallState, request: Any, context: grpc.aio.ServicerContext) -> None:
        if request is None:
            return
        for field_name, limit, counted in self._checks.get(call.method, ()):
            if not hasattr(request, field_name):
                continue
            value = getattr(request, field_name)
            size = len(value) if counted else int(value)
            if size > limit:
                what = f"{size} {field_name}" if counted else f"{field_name} {size}"
                raise errors.InvalidArgument(
                    f"{what} is over this deployment's limit of {limit}: split the request or ask for fewer",
                    field=field_name,
                    reason="LIMIT_EXCEEDED",
                )


class CapDeadline:
    """Every call runs under a deadline: the caller's, capped at the configured maximum."""

    name = "deadline"

    def __init__(self, max_seconds: float):
        self._max = max_seconds

    async def check(self, call: CallState, request: Any, context: grpc.aio.ServicerContext) -> None:
        remaining = context.time_remaining()
        now = time.monotonic()
        allowed = self._max if remaining is None else min(remaining, self._max)
        call.deadline = now + allowed
        call.caller_deadline = None if remaining is None else now + remaining


# Audit -------------------------------------------------------------------------


def _digest(request: Any) -> str:
    if request is None or not hasattr(request, "SerializeToString"):
        return ""
    return "sha256:" + hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


_ID_FIELDS = {
    "person_id": "person_ids",
    "person_ids": "person_ids",
    "record_id": "record_ids",
    "record_ids": "record_ids",
}


def collect_ids(message: Any, into: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Person and record ids anywhere in a message, each once, in order (repeated floats are never walked)."""
    into = into if into is not None else {"person_ids": [], "record_ids": []}
    if message is None or not hasattr(message, "DESCRIPTOR"):
        return into
    seen = {target: set(values) for target, values in into.items()}
    _collect(message, into, seen)
    return into


def _collect(message: Any, into: dict[str, list[str]], seen: dict[str, set[str]]) -> None:
    for name, target, repeated in _id_plan(message.DESCRIPTOR):
        if target is None:  # a message field that may hold ids
            if repeated:
                for item in getattr(message, name):
                    _collect(item, into, seen)
            elif message.HasField(name):
                _collect(getattr(message, name), into, seen)
            continue
        values = getattr(message, name)
        for value in values if repeated else (values,):
            if value and value not in seen[target]:
                seen[target].add(value)
                into[target].append(value)


@functools.cache
def _id_plan(descriptor: Any) -> tuple[tuple[str, str | None, bool], ...]:
    """The fields of a message type to read for ids: id strings, and message fields whose type can hold some.

    Worked out once per type: a Search response's hits then cost a few attribute reads
    each, instead of listing every set field of every hit and its attributes.
    """
    plan = []
    for field_descriptor in descriptor.fields:
        repeated = field_descriptor.is_repeated
        target = _ID_FIELDS.get(field_descriptor.name)
        if target and field_descriptor.type == field_descriptor.TYPE_STRING:
            plan.append((field_descriptor.name, target, repeated))
        elif field_descriptor.type == field_descriptor.TYPE_MESSAGE and _may_hold_ids(field_descriptor.message_type):
            plan.append((field_descriptor.name, None, repeated))
    return tuple(plan)


def _may_hold_ids(descriptor: Any, visiting: frozenset[str] = frozenset()) -> bool:
    """Whether a message of this type can hold an id field at any depth (map entries are never walked).

    `visiting`: the types on the path here, so that a recursive type ends the search.
    """
    if descriptor.GetOptions().map_entry or descriptor.full_name in visiting:
        return False
    for field_descriptor in descriptor.fields:
        if field_descriptor.type == field_descriptor.TYPE_STRING and field_descriptor.name in _ID_FIELDS:
            return True
        if field_descriptor.type == field_descriptor.TYPE_MESSAGE and _may_hold_ids(
            field_descriptor.message_type, visiting | {descriptor.full_name}
        ):
            return True
    return False


#: Whose ids an event lists: what a change names (request), or what a read returned (response).
_IDS_FROM_REQUEST = {"/kinship.v1.Indexer/Upsert", "/kinship.v1.Indexer/Delete", "/kinship.v1.Indexer/BulkEnrol"}
#: A change that may store part of what it names: its event also says what was refused and how much stored.
_PARTIAL_CHANGES = {"/kinship.v1.Indexer/BulkEnrol"}


class Audit:
    def __init__(self, trail: AuditTrail, service: str):
        self._trail = trail
        self._service = service

    def wanted(self, call: CallState, refused: bool) -> bool:
        return refused or call.method in policy.AUDITED

    async def record(
        self,
        call: CallState,
        request: Any,
        responses: Sequence[Any],
        outcome: str,
        reason: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        identity = call.identity
        ids: dict[str, list[str]] = {"person_ids": [], "record_ids": []}
        partial = _partial_change(call.method, responses)
        # A stream that failed after some of its batches were stored changed those: it lists what it named.
        if outcome == "OK" or (partial and partial["enrolled_count"]):
            if call.method in _IDS_FROM_REQUEST and request is None:
                ids = call.streamed_ids
                sources = []
            elif call.method in _IDS_FROM_REQUEST:
                sources = [request]
            else:
                sources = list(responses)
            for message in sources:
                collect_ids(message, ids)
        event = {
            "time": now_iso(),
            "service": self._service,
            "rpc": call.method,
            "request_id": structlog.contextvars.get_contextvars().get("request_id", ""),
            "caller": identity.name if identity else "",
            "role": identity.role if identity else "",
            "tenant": identity.tenant if identity else None,
            "via": identity.via if identity else None,
            "auth": identity.method if identity else "",
            "peer": call.peer,
            "case_id": call.case_id,
            "purpose": call.purpose,
            "request_digest": _digest(request),
            **ids,
            **partial,
            "outcome": outcome,
            "reason": reason,
            "refused_by": call.refused_by,
            **(extra or {}),
        }
        await self._trail.record(event)

    async def record_shed(self, method: str, entry: dict[str, Any]) -> None:
        """The event of `entry["count"]` calls of `method` refused at capacity before any gate ran."""
        call = CallState(method=method, metadata={}, peer=entry["peers"][0] if entry["peers"] else "")
        call.refused_by = "admission control"
        shed = {
            "refused_count": entry["count"],
            "refused_from": now_iso(entry["first"]),
            "refused_until": now_iso(entry["last"]),
            "peers": entry["peers"],
        }
        await self.record(call, None, [], "RESOURCE_EXHAUSTED", entry["reason"], extra=shed)


def _partial_change(method: str, responses: Sequence[Any]) -> dict[str, Any]:
    """For a bulk enrolment: how many records were stored, and each refused one (its stream index and id).

    Its `record_ids` are those the stream named; a refused record is not stored, and a repeated
    record id is refused at its repeat only (its first occurrence is stored): the index says which.
    """
    if method not in _PARTIAL_CHANGES:
        return {}
    refused = [
        {"index": failure.index, "record_id": failure.record_id}
        for response in responses
        for failure in response.failures
    ]
    enrolled = max((response.enrolled_total for response in responses), default=0)
    return {"enrolled_count": enrolled, "refused_records": refused}


class ShedAudit:
    """Calls refused by admission control before any gate ran: one audit event per RPC per interval.

    When a service is full, the runtime refuses calls before parsing or authenticating them,
    so that shedding stays cheap (runtime/interceptors.py). An fsynced event per refused call
    would undo that; and such a call read and changed nothing, and named no caller. So each
    interval with refusals leaves, per RPC, one event: how many were refused, the first and
    last time, and the first peers. The refused calls do not wait for it.
    """

    MAX_PEERS = 10

    def __init__(self, audit: Audit, interval: float = 1.0):
        self._audit = audit
        self._interval = interval
        self._pending: dict[str, dict[str, Any]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()

    def note(self, method: str, peer: str, reason: str) -> None:
        now = time.time()
        entry = self._pending.get(method)
        if entry is None:
            entry = self._pending[method] = {"count": 0, "first": now, "peers": [], "reason": reason}
        entry["count"] += 1
        entry["last"] = now
        if peer not in entry["peers"] and len(entry["peers"]) < self.MAX_PEERS:
            entry["peers"].append(peer)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self._interval, self._write)

    def _write(self) -> None:
        pending, self._pending, self._flush = self._pending, {}, None
        for method, entry in pending.items():
            task = asyncio.ensure_future(self._audit.record_shed(method, entry))
            self._writing.add(task)
            task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not write the audit event of calls refused at capacity", error=str(task.exception()))


# The interceptor -----------------------------------------------------------------


@dataclass(frozen=True)
class _Malformed:
    """Stands in for a request whose bytes did not parse, so the call is refused as INVALID_ARGUMENT."""

    type_name: str


def _tolerant(deserializer, method: str):
    """grpc answers undecodable bytes with UNKNOWN and the parser's words; this makes them a clear refusal."""
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - any parse failure is the caller's malformed request
            return _Malformed(method)

    return parse


async def _checked_stream(requests, call: CallState):
    """The request stream, each message checked; where the audit lists what a call changes, its ids noted."""
    wants_ids = call.method in _IDS_FROM_REQUEST
    # The ids noted so far, as sets kept for the whole stream (not rebuilt for each message).
    seen = {target: set(values) for target, values in call.streamed_ids.items()}
    async for request in requests:
        _refuse_malformed(request)
        if wants_ids and hasattr(request, "DESCRIPTOR"):
            _collect(request, call.streamed_ids, seen)
        yield request


def _refuse_malformed(request: Any) -> None:
    if isinstance(request, _Malformed):
        raise errors.InvalidArgument(
            f"the request bytes are not a valid message for {request.type_name}: send the message the .proto defines",
            reason="MALFORMED_REQUEST",
        )


#: The call the security interceptors are handling; made by the outermost of them.
CURRENT_CALL: contextvars.ContextVar[CallState | None] = contextvars.ContextVar("kinship_security_call", default=None)

_DEADLINE_MESSAGE = "the call ran past its deadline (the caller's, capped by this deployment's maximum)"


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Base of the security interceptor, for all four kinds of handler.

    A subclass says what to do before the handler (`enter`, which refuses by raising a
    KinshipError) and after it (`leave`, told the outcome). Health and reflection pass
    untouched. All of them share one `CallState` per call (`CURRENT_CALL`); the
    outermost makes it, and for streaming responses turns a refusal into its status
    (the runtime's CallContextInterceptor does that for unary ones).
    """

    #: The innermost runs the handler under the call's capped deadline.
    runs_handler = False

    async def enter(self, call: CallState, request: Any, context) -> Any:
        return None

    async def leave(self, call: CallState, entered: Any, request: Any, responses: list, error, context) -> None:
        return None

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or policy.is_public(method):
            return handler
        metadata = _metadata(handler_call_details)
        deserializer = _tolerant(handler.request_deserializer, method)
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            behaviour = self._unary(handler.unary_unary, method, metadata, stream_request=False)
            return grpc.unary_unary_rpc_method_handler(behaviour, deserializer, serializer)
        if handler.stream_unary is not None:
            behaviour = self._unary(handler.stream_unary, method, metadata, stream_request=True)
            return grpc.stream_unary_rpc_method_handler(behaviour, deserializer, serializer)
        if handler.unary_stream is not None:
            behaviour = self._streaming(handler.unary_stream, method, metadata, stream_request=False)
            return grpc.unary_stream_rpc_method_handler(behaviour, deserializer, serializer)
        behaviour = self._streaming(handler.stream_stream, method, metadata, stream_request=True)
        return grpc.stream_stream_rpc_method_handler(behaviour, deserializer, serializer)

    def _call(self, method: str, metadata: dict[str, str], context) -> tuple[CallState, Any]:
        current = CURRENT_CALL.get()
        if current is not None and current.method == method:
            return current, None
        # Case id and purpose are read first, so that even a call refused early is audited with them.
        call = CallState(
            method=method,
            metadata=metadata,
            peer=context.peer() or "",
            case_id=metadata.get(forwarding.CASE_ID_KEY, "").strip()[:MAX_PURPOSE_CHARS],
            purpose=metadata.get(forwarding.PURPOSE_KEY, "").strip()[:MAX_PURPOSE_CHARS],
        )
        return call, CURRENT_CALL.set(call)

    def _time_left(self, call: CallState) -> float | None:
        if not self.runs_handler or call.deadline is None:
            return None
        return max(0.0, call.deadline - time.monotonic())

    def _unary(self, inner, method: str, metadata: dict[str, str], *, stream_request: bool):
        async def wrapped(request_or_iterator, context):
            call, token = self._call(method, metadata, context)
            request = None if stream_request else request_or_iterator
            if stream_request and token is not None:
                request_or_iterator = _checked_stream(request_or_iterator, call)
            entered, error, response = None, None, None
            try:
                entered = await self.enter(call, request, context)
                try:
                    async with asyncio.timeout(self._time_left(call)):
                        response = inner(request_or_iterator, context)
                        if asyncio.iscoroutine(response):
                            response = await response
                except TimeoutError as exc:
                    raise errors.DeadlineExceeded(_DEADLINE_MESSAGE) from exc
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                try:
                    await self.leave(call, entered, request, [response] if response is not None else [], error, context)
                finally:
                    if token is not None:
                        CURRENT_CALL.reset(token)

        return wrapped

    def _streaming(self, inner, method: str, metadata: dict[str, str], *, stream_request: bool):
        async def wrapped(request_or_iterator, context):
            call, token = self._call(method, metadata, context)
            call.streams_responses = True
            request = None if stream_request else request_or_iterator
            if stream_request and token is not None:
                request_or_iterator = _checked_stream(request_or_iterator, call)
            entered, error, responses = None, None, []
            try:
                entered = await self.enter(call, request, context)
                result = inner(request_or_iterator, context)
                if asyncio.iscoroutine(result):  # a handler that writes with context.write()
                    async with asyncio.timeout(self._time_left(call)):
                        await result
                    return
                stream = result.__aiter__()
                while True:
                    # The cap bounds the wait for each message, never the caller's own time between them.
                    try:
                        async with asyncio.timeout(self._time_left(call)):
                            response = await anext(stream)
                    except StopAsyncIteration:
                        break
                    except TimeoutError as exc:
                        raise errors.DeadlineExceeded(_DEADLINE_MESSAGE) from exc
                    responses.append(response)
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                try:
                    await self.leave(call, entered, request, responses, error, context)
                finally:
                    if token is not None:
                        CURRENT_CALL.reset(token)
                if token is not None and isinstance(error, errors.KinshipError):
                    log.warning("rpc refused", code=error.status_name, error=error.message, reason=error.reason)
                    await grpc_errors.abort_with(context, error)

        return wrapped


class SecurityInterceptor(CallInterceptor):
    """The gates in order, the caller bound for the handler, and the audit event: one layer.

    One interceptor, not one per gate: each layer of a grpc.aio chain costs every call a
    handler object, a coroutine and its awaits. Nine layers (audit, seven gates, binding)
    cost about 0.2 ms a call more than this one (a trivial Search handler behind the
    whole chain, measured side by side; docs/benchmarks.md, "Costs behind the defaults").

    - `enter` runs each gate; the first to refuse (a KinshipError) is named in the audit.
    - Then the call is bound: `tenancy.AUTHENTICATED_TENANT` (security on),
      `forwarding.FORWARDED` (identity, case id and purpose for calls to other services)
      and `deadlines.CALL_DEADLINE` (the caller's deadline capped at the maximum);
      the handler runs under that cap.
    - `leave` unbinds, then writes the audit event of an audited RPC or of a refusal,
      fsynced, before the response leaves.
    """

    runs_handler = True

    def __init__(self, gates: Sequence[Any], audit: Audit, *, enforced: bool):
        self.gates = tuple(gates)
        self._audit = audit
        self._enforced = enforced
        # The runtime's fast refusals at capacity never reach this interceptor: it tells this.
        self.shed = ShedAudit(audit)

    async def enter(self, call, request, context) -> list:
        for gate in self.gates:
            try:
                await gate.check(call, request, context)
            except errors.KinshipError:
                call.refused_by = gate.name
                raise
        return self._bind(call)

    def _bind(self, call: CallState) -> list:
        identity = call.identity
        tokens = []
        forwarded: list[tuple[str, str]] = []
        if self._enforced and identity is not None:
            tokens.append((AUTHENTICATED_TENANT, AUTHENTICATED_TENANT.set(identity.tenant)))
            forwarded.append((forwarding.ON_BEHALF_OF_KEY, identity.name))
            forwarded.append((forwarding.ON_BEHALF_OF_ROLE_KEY, identity.role))
            if identity.tenant:
                forwarded.append((forwarding.ON_BEHALF_OF_TENANT_KEY, identity.tenant))
        if call.case_id:
            forwarded.append((forwarding.CASE_ID_KEY, call.case_id))
        if call.purpose:
            forwarded.append((forwarding.PURPOSE_KEY, call.purpose))
        tokens.append((forwarding.FORWARDED, forwarding.FORWARDED.set(tuple(forwarded))))
        # What Milvus and the other services may take: the capped deadline less the answer margin. A
        # streamed answer is capped per message, so its work (a long bulk load) gets the caller's own.
        bound = call.caller_deadline if call.streams_responses else call.deadline
        if bound is not None:
            tokens.append((CALL_DEADLINE, CALL_DEADLINE.set(work_deadline(bound - time.monotonic()))))
        return tokens

    async def leave(self, call, entered, request, responses, error, context) -> None:
        for var, token in reversed(entered or []):
            var.reset(token)
        if not self._audit.wanted(call, call.refused_by is not None):
            return
        if error is None:
            outcome, reason = "OK", ""
        elif isinstance(error, errors.KinshipError):
            outcome, reason = error.status_name, error.reason
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):
            outcome, reason = "CANCELLED", ""
        else:
            code = context.code() if isinstance(error, grpc.aio.AbortError) else None
            outcome, reason = (code.name if code else "INTERNAL"), ""
        await self._audit.record(call, request, responses, outcome, reason)


class ParseRequest:
    """Refuses request bytes that did not parse as the RPC's message."""

    name = "request parsing"

    async def check(self, call: CallState, request: Any, context) -> None:
        _refuse_malformed(request)


def audit_sinks(service: str, settings: SimpleNamespace) -> list[Any]:
    """The audit sinks the settings ask for, each with signed checkpoints where a key file is given."""
    key_file = getattr(settings, "audit_key_file", None)
    key = checkpoints.load_private_key(key_file) if key_file is not None else None
    folder = getattr(settings, "audit_checkpoint_dir", None)

    def checkpointer(log_name: str, sink_path: Path | None) -> checkpoints.Checkpointer | None:
        if key is None:
            return None
        return checkpoints.Checkpointer(
            key,
            log_name=log_name,
            sink=checkpoints.CheckpointFile(sink_path) if sink_path is not None else None,
            every_events=int(getattr(settings, "audit_checkpoint_events", checkpoints.DEFAULT_EVERY_EVENTS)),
            every_seconds=float(getattr(settings, "audit_checkpoint_seconds", checkpoints.DEFAULT_EVERY_SECONDS)),
        )

    sinks: list[Any] = []
    if settings.audit_sink in ("file", "both"):
        path = audit_path(settings, service)
        sinks.append(FileSink(path, checkpointer(path.name, checkpoints.checkpoint_path(path, folder))))
    if settings.audit_sink in ("stdout", "both"):
        # One chain per process: its checkpoints name the service and go to the folder only where one is set.
        name = f"stdout:{service}"
        where = Path(folder) / f"{service}.stdout.checkpoints.jsonl" if folder is not None else None
        sinks.append(StreamSink(checkpointer=checkpointer(name, where)))
    if key is not None:
        log.info("audit checkpoints signed", key_id=checkpoints.key_id(key.public_key()))
    return sinks


def build_interceptors(service: str, settings: SimpleNamespace) -> list[grpc.aio.ServerInterceptor]:
    """The security interceptors the settings ask for, outermost first (see `security.settings`)."""
    # Settings made by hand (tests) may lack the security ones: their defaults apply.
    defaults = {s.name: s.default for s in security_settings(service)}
    settings = SimpleNamespace(**{**defaults, **vars(settings)})
    enforced = security_on(settings)
    keys = tuple(getattr(settings, "jwt_public_keys", ()) or ())
    verifier = (
        TokenVerifier.from_files(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience) if keys else None
    )
    gates = [
        ParseRequest(),
        Authenticate(verifier, enforced=enforced),
        Authorise(enforced=enforced),
        BindPurpose(required=purpose_required(settings)),
        RateLimit(settings.rate_limit_per_second, settings.rate_limit_burst),
        SizeLimits(max_top_k=settings.max_top_k, max_top_n=settings.max_top_n, max_batch=settings.max_batch),
        CapDeadline(settings.max_deadline_seconds),
    ]
    sinks = audit_sinks(service, settings)
    if not enforced:
        log.warning("security is OFF: every local caller is allowed; the audit trail is still written")
    return [SecurityInterceptor(gates, Audit(AuditTrail(sinks), service), enforced=enforced)]
