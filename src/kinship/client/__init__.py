"""kinship.client: a typed Python client of kinship-search, blocking and asyncio.

    from kinship.client import KinshipClient, Relative

    with KinshipClient() as client:                    # KINSHIP_*_ADDRESS or 127.0.0.1:50051-50053
        client.enroll("gallery/", facts=Facts(source="registry-a"))
        found = client.find_relatives([Relative("father", ["dad.jpg"])], sex="m", birth_year=(1995, 1999))

See docs/client.md. It depends on the generated kinship.v1 stubs and the project's base
(runtime, security) only, never on a service's internals.
"""

from ._calls import IDEMPOTENT, RetryPolicy, Targets
from .aio import AsyncKinshipClient
from .enrolment import EnrolError, EnrolItem, EnrolProgress, EnrolReport, Journal
from .errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    KinshipClientError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .sync import KinshipClient
from .types import (
    Candidate,
    CompareResult,
    EmbedResult,
    Evidence,
    Face,
    Facts,
    FindResult,
    GalleryPerson,
    PersonRecord,
    Photo,
    Record,
    Relative,
    Scoring,
    ServiceStatus,
    Status,
)

__all__ = [
    "IDEMPOTENT",
    "AsyncKinshipClient",
    "Candidate",
    "CompareResult",
    "DeadlineExceeded",
    "EmbedResult",
    "EnrolError",
    "EnrolItem",
    "EnrolProgress",
    "EnrolReport",
    "Evidence",
    "Face",
    "Facts",
    "FailedPrecondition",
    "FieldViolation",
    "FindResult",
    "GalleryPerson",
    "Internal",
    "InvalidArgument",
    "Journal",
    "KinshipClient",
    "KinshipClientError",
    "NotFound",
    "PermissionDenied",
    "PersonRecord",
    "Photo",
    "Record",
    "Relative",
    "ResourceExhausted",
    "RetryPolicy",
    "Scoring",
    "ServiceStatus",
    "Status",
    "Targets",
    "Unauthenticated",
    "Unavailable",
]
