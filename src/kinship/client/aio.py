"""`AsyncKinshipClient`: the typed client on grpc.aio (see docs/client.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc

from kinship.security.client import ClientSecurity
from kinship.security.transport import ClientTls
from kinship.v1 import embedder_pb2, embedder_pb2_grpc, indexer_pb2, indexer_pb2_grpc, ranker_pb2, ranker_pb2_grpc

from . import _calls, _requests, enrolment, errors
from ._calls import RetryPolicy, Targets
from .types import (
    CompareResult,
    EmbedResult,
    Facts,
    FindResult,
    GalleryPerson,
    ImageLike,
    Photo,
    Record,
    Relative,
    ServiceStatus,
    Status,
)


class AsyncKinshipClient:
    """The suite's three services behind one object, on asyncio.

    `target`: None (KINSHIP_<SERVICE>_ADDRESS, else 127.0.0.1:50051-50053), "host" (that host
    on the default ports), "host:port" (one address routing all three services) or a mapping
    {"embedder": ..., "indexer": ..., "ranker": ...}. `tls`: a ClientTls, or a folder made by
    `kinship certs` with `client_name`; `token`: a bearer JWT. `case_id` and `purpose` are sent
    with every call (searches need them where security is on). `timeout` is the default deadline
    of one call in seconds, retries included; every method takes its own `timeout=`.
    """

    def __init__(
        self,
        target: str | Mapping[str, str] | Targets | None = None,
        *,
        tls: ClientTls | str | Path | None = None,
        token: str | None = None,
        client_name: str | None = None,
        case_id: str = "",
        purpose: str = "",
        tenant: str = "",
        security: ClientSecurity | None = None,
        timeout: float | None = 60.0,
        retry: RetryPolicy | None = None,
        max_message_mb: float = 16.0,
        keepalive_seconds: float = _calls.DEFAULT_KEEPALIVE_SECONDS,
    ):
        self.targets = Targets.resolve(target)
        self.security = _calls.security_of(
            tls, token, client_name=client_name, case_id=case_id, purpose=purpose, security=security
        )
        self.tenant = tenant
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._settings = _calls.ChannelSettings(max_message_mb, keepalive_seconds)
        self._channels: dict[str, grpc.aio.Channel] = {}
        for service in ("embedder", "indexer", "ranker"):
            address = self.targets.of(service)
            if address not in self._channels:  # one channel per address: a gateway carries all three
                self._channels[address] = _calls.aio_channel(address, self.security, self._settings)
        self.embedder = embedder_pb2_grpc.EmbedderStub(self._channel("embedder"))
        self.indexer = indexer_pb2_grpc.IndexerStub(self._channel("indexer"))
        self.ranker = ranker_pb2_grpc.KinshipRankerStub(self._channel("ranker"))
        self._stubs = {"embedder": self.embedder, "indexer": self.indexer, "ranker": self.ranker}
        self._identity_model = ""

    def _channel(self, service: str) -> grpc.aio.Channel:
        return self._channels[self.targets.of(service)]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def __aenter__(self) -> AsyncKinshipClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- one call, its deadline and its retries ---------------------------------------

    async def call(self, method: str, request, timeout: float | None = None, *, stub=None):
        """Sends one unary call of a kinship.v1 method (its full name) with the client's rules."""
        if stub is None:
            stub = getattr(self._stubs[_requests.SERVICE_OF[method]], method.rsplit("/", 1)[1])
        timeout = self.timeout if timeout is None else timeout
        end = _calls.deadline_end(timeout)
        request_id = _calls.new_request_id()
        md = _calls.metadata(self.security, request_id)
        attempt = 0
        while True:
            attempt += 1
            left = _calls.time_left(end, method, request_id, attempt - 1)
            try:
                return await stub(request, timeout=left, metadata=md)
            except grpc.RpcError as exc:
                error = errors.from_rpc_error(exc, method=method, request_id=request_id, attempts=attempt)
                wait = self.retry.wait_before_retry(error, method, attempt, end)
                if wait is None:
                    raise error from exc
            await asyncio.sleep(wait)

    # --- the methods ------------------------------------------------------------------

    async def embed(
        self,
        image: ImageLike,
        *,
        model_id: str = "",
        max_faces: int = 0,
        additional_model_ids: Sequence[str] = (),
        pre_aligned: bool = False,
        timeout: float | None = None,
    ) -> EmbedResult:
        """The faces of one image (bytes or a file) and their embeddings; `pre_aligned`: the image is one
        face crop already aligned to the 112x112 template (no detection: exactly one face)."""
        request = _requests.embed_request(image, model_id, max_faces, additional_model_ids, pre_aligned)
        return EmbedResult.from_proto(await self.call(_requests.EMBED, request, timeout))

    async def models(self, *, timeout: float | None = None) -> list[embedder_pb2.ModelInfo]:
        """The models the embedder serves (identity, and kinship models bound to one)."""
        return list((await self.call(_requests.LIST_MODELS, embedder_pb2.ListModelsRequest(), timeout)).models)

    async def enroll(
        self,
        source,
        *,
        person_id: str | None = None,
        manifest: str | Path | None = None,
        facts: Facts | None = None,
        model_id: str = "",
        journal: str | Path | bool | None = None,
        progress: Callable[[enrolment.EnrolProgress], None] | None = None,
        batch_size: int = enrolment.BATCH_SIZE,
        in_flight: int = enrolment.IN_FLIGHT,
        pre_aligned: bool = False,
        timeout: float | None = None,
    ) -> enrolment.EnrolReport:
        """Enrols images: `source` is a file, a folder (sub-folders name people), a list of them, or
        EnrolItems; `manifest` a CSV path,person_id[,birth_year,sex,region,source]. `journal`: a folder
        for the resume journal (True: the default one; None: none). See kinship.client.enrolment."""
        items = _requests.enrol_items(source, person_id=person_id, manifest=manifest, facts=facts)
        book = None
        if journal:
            book = enrolment.Journal(None if journal is True else journal)
        md = _calls.metadata(self.security, _calls.new_request_id())
        return await enrolment.enrol(
            items,
            unary=lambda method, request, t: self.call(method, request, t),
            bulk_enrol=lambda requests: self.indexer.BulkEnrol(requests, metadata=md),
            indexer_target=self.targets.indexer,
            model_id=model_id,
            tenant=self.tenant,
            journal=book,
            progress=progress,
            batch_size=batch_size,
            in_flight=in_flight,
            pre_aligned=pre_aligned,
            timeout=self.timeout if timeout is None else timeout,
        )

    async def find_relatives(
        self,
        relatives: Sequence[Relative | ranker_pb2.Relative] = (),
        *,
        sex: str | int | None = None,
        birth_year: int | tuple[int | None, int | None] | None = None,
        regions: Sequence[str] = (),
        top_n: int = 10,
        prior: float = 0.0,
        model_id: str = "",
        request: ranker_pb2.FindRelativesRequest | None = None,
        timeout: float | None = None,
    ) -> FindResult:
        """The gallery people likeliest to be the missing person, given relatives' photos
        (`request` instead sends a FindRelativesRequest as it is)."""
        if request is None:
            request = _requests.find_request(
                relatives, sex=sex, birth_year=birth_year, regions=regions, top_n=top_n, prior=prior,
                model_id=model_id, tenant=self.tenant,
            )  # fmt: skip
        return FindResult.from_proto(await self.call(_requests.FIND, request, timeout))

    async def compare(
        self,
        relatives: Sequence[Relative | ranker_pb2.Relative] = (),
        *,
        candidate_photos: Sequence[ImageLike | Photo] | None = None,
        candidate_sex: str | int | None = None,
        candidate_person_id: str | None = None,
        sex: str | int | None = None,
        birth_year: int | tuple[int | None, int | None] | None = None,
        regions: Sequence[str] = (),
        prior: float = 0.0,
        model_id: str = "",
        request: ranker_pb2.CompareKinshipRequest | None = None,
        timeout: float | None = None,
    ) -> CompareResult:
        """One candidate (photos, or a gallery person) scored against the family as find_relatives scores."""
        if request is None:
            request = _requests.compare_request(
                relatives, candidate_photos=candidate_photos, candidate_sex=candidate_sex,
                candidate_person_id=candidate_person_id, sex=sex, birth_year=birth_year, regions=regions,
                prior=prior, model_id=model_id, tenant=self.tenant,
            )  # fmt: skip
        return CompareResult.from_proto(await self.call(_requests.COMPARE, request, timeout))

    async def records(
        self, person_ids: Sequence[str] | str, *, model_id: str = "", timeout: float | None = None
    ) -> list[Record]:
        """The gallery records of these people (of the embedder's default identity model unless named)."""
        model_id = model_id or await self._default_model(timeout)
        request = _requests.records_request(person_ids, model_id, self.tenant)
        return [Record.from_proto(r) for r in (await self.call(_requests.GET_RECORDS, request, timeout)).records]

    async def people(
        self, person_ids: Sequence[str] | str | None = None, *, timeout: float | None = None
    ) -> list[GalleryPerson]:
        """As KinshipClient.people: the gallery's people with their records and the models holding them."""
        wanted = _requests.person_list(person_ids)
        stats = await self.call(_requests.STATS, indexer_pb2.StatsRequest(tenant=self.tenant), timeout)
        by_model: dict[str, list] = {}
        for model in _requests.listed_models(stats):
            records, token = [], ""
            while True:
                request = _requests.people_requests(model, wanted, self.tenant, token)
                reply = await self.call(_requests.GET_RECORDS, request, timeout)
                records += reply.records
                token = reply.next_page_token
                if wanted or not token:
                    break
            by_model[model] = records
        return _requests.people_of(by_model, stats.tenant or self.tenant)

    async def delete(
        self,
        *,
        person_ids: Sequence[str] | str = (),
        record_ids: Sequence[str] | str = (),
        model_id: str = "",
        await_compaction: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Erases records (in every model's collection unless `model_id`); returns how many. Never
        retried: a second copy after a lost answer would count 0."""
        request = _requests.delete_request(person_ids, record_ids, model_id, await_compaction, self.tenant)
        return (await self.call(_requests.DELETE, request, timeout)).deleted_count

    async def status(self, *, timeout: float = 3.0) -> Status:
        """Health of the three services and how the ranker scores (never raises for a service down)."""
        services: dict[str, ServiceStatus] = {}
        for name in ("embedder", "indexer", "ranker"):
            stub = health_pb2_grpc.HealthStub(self._channel(name)).Check
            try:
                reply = await self.call(_requests.HEALTH, _requests.HEALTH_REQUEST, timeout, stub=stub)
                services[name] = ServiceStatus(name, self.targets.of(name), _requests.health_name(reply.status))
            except errors.KinshipClientError as exc:
                services[name] = ServiceStatus(
                    name, self.targets.of(name), "UNREACHABLE", f"{exc.status.name}: {exc.message}"
                )
        scoring, scoring_error = None, ""
        if services["ranker"].status != "UNREACHABLE":
            try:
                scoring = await self.call(_requests.DESCRIBE, ranker_pb2.DescribeScoringRequest(), timeout)
            except errors.KinshipClientError as exc:
                scoring_error = f"{exc.status.name}: {exc.message}"
        return Status(services, scoring, scoring_error)

    async def _default_model(self, timeout: float | None) -> str:
        if not self._identity_model:
            self._identity_model = _requests.default_identity_model(await self.models(timeout=timeout))
        return self._identity_model
