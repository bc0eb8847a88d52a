"""Roles, the permission table, and the RPCs that need a case id and a purpose.

One table, read by the authorisation gate, decides every call: an RPC that is not in
it is refused to everyone (deny by default), so a new RPC stays closed until someone
decides who may call it.
"""

from __future__ import annotations

from dataclasses import dataclass

ENROLLER = "enroller"
SEARCHER = "searcher"
AUDITOR = "auditor"
ADMIN = "admin"
#: The suite's own services calling each other (the ranker's certificate).
SERVICE = "service"
ROLES = (ENROLLER, SEARCHER, AUDITOR, ADMIN, SERVICE)

#: Open to every caller that passed the transport (mTLS handshake): probes and tooling.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

#: RPC -> roles allowed to call it.
PERMISSIONS: dict[str, frozenset[str]] = {
    # Embedder: faces for enrolment and search; the ranker's own use.
    "/kinship.v1.Embedder/Embed": frozenset({ENROLLER, SEARCHER, ADMIN, SERVICE}),
    "/kinship.v1.Embedder/EmbedBatch": frozenset({ENROLLER, SEARCHER, ADMIN, SERVICE}),
    "/kinship.v1.Embedder/ListModels": frozenset({ENROLLER, SEARCHER, ADMIN, SERVICE}),
    # Indexer.
    "/kinship.v1.Indexer/Upsert": frozenset({ENROLLER, ADMIN}),
    # Bulk enrolment (a stream of records): the same right as Upsert.
    "/kinship.v1.Indexer/BulkEnrol": frozenset({ENROLLER, ADMIN}),
    # Row counts and index state of the caller's tenant: no person data. The searcher's, for the
    # ranker (calling on a searcher's behalf) to check that the family query covers the gallery.
    "/kinship.v1.Indexer/Stats": frozenset({ADMIN, ENROLLER, SEARCHER, AUDITOR, SERVICE}),
    "/kinship.v1.Indexer/Search": frozenset({SEARCHER}),
    "/kinship.v1.Indexer/GetRecords": frozenset({SEARCHER}),
    "/kinship.v1.Indexer/Delete": frozenset({ADMIN}),
    "/kinship.v1.Indexer/ListCollections": frozenset({ADMIN, ENROLLER, SERVICE}),
    # Ranker.
    "/kinship.v1.KinshipRanker/FindRelatives": frozenset({SEARCHER}),
    "/kinship.v1.KinshipRanker/CompareKinship": frozenset({SEARCHER}),
    "/kinship.v1.KinshipRanker/DescribeScoring": frozenset({SEARCHER, AUDITOR, ADMIN, ENROLLER, SERVICE}),
}

#: RPCs that read or change people's data: each needs `x-case-id` and `x-purpose`.
PURPOSE_BOUND = frozenset(
    {
        "/kinship.v1.KinshipRanker/FindRelatives",
        "/kinship.v1.KinshipRanker/CompareKinship",
        "/kinship.v1.Indexer/Search",
        "/kinship.v1.Indexer/GetRecords",
        "/kinship.v1.Indexer/Delete",
    }
)

#: RPCs whose every call is audited (searches, enrolment, deletion); refused calls of any RPC are too.
AUDITED = PURPOSE_BOUND | {"/kinship.v1.Indexer/Upsert", "/kinship.v1.Indexer/BulkEnrol"}


@dataclass(frozen=True)
class Identity:
    """Who is calling: a name, a role, and the tenant (agency gallery) it is bound to, if any."""

    name: str
    role: str
    tenant: str | None = None
    #: How the caller proved it: "certificate", "token", or "none" (local plaintext, security off).
    method: str = "certificate"
    #: When a suite service calls on behalf of someone, the service's own name.
    via: str | None = None


def is_public(method: str) -> bool:
    return method.startswith(PUBLIC_PREFIXES)


def allowed(method: str, role: str) -> bool:
    return role in PERMISSIONS.get(method, frozenset())


def roles_for(method: str) -> list[str]:
    return sorted(PERMISSIONS.get(method, frozenset()))
