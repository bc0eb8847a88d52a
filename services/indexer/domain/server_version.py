"""Which Milvus the indexer runs on: the supported server range, and Milvus Lite.

The range is the one the integration suite runs (the 2.3.5 server of the PyPI package
`milvus==2.3.5`), so that the Milvus that is deployed is the Milvus that is tested
(docs/deploy.md, "Supported Milvus"). Later 2.3 patch releases are accepted: patches of
one minor line keep its API, schema and storage. 2.4 and later are refused until a test
runs them: the adapter takes a different write path there (native upsert instead of
delete-then-insert) that no test has run against a server.

Milvus Lite reports its own version ("milvus_lite-3.2.2"), not a server's; it is accepted
whatever its number, because the package pin (`milvus-lite==3.2.2`) is what decides which
Lite runs in process, and that pin is what the suite tests.
"""

from __future__ import annotations

import re
from typing import Protocol

from kinship.runtime.errors import FailedPrecondition

#: Lowest server version supported (the one tested), inclusive.
SUPPORTED_MIN = (2, 3, 5)
#: First server version no longer supported (untested), exclusive.
SUPPORTED_BELOW = (2, 4, 0)
SUPPORTED_RANGE = f">= {'.'.join(map(str, SUPPORTED_MIN))}, < {'.'.join(map(str, SUPPORTED_BELOW))}"
#: The image the manifests deploy (deploy/k8s/milvus): the version the integration suite runs.
DEPLOYED_IMAGE = "milvusdb/milvus:v2.3.5"
#: How Milvus Lite starts the version it reports.
LITE_PREFIX = "milvus_lite"
_SERVER_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?![\d.])")


class ServerVersioned(Protocol):
    """What the check needs of a gallery backend (the Milvus adapter, or a test's fake)."""

    @property
    def uri(self) -> str:
        """Where the backend is, as it may be shown (no credentials)."""

    def server_version(self) -> str:
        """The version the backend reports (Milvus Lite: "milvus_lite-X.Y.Z"); Unavailable when it does not answer."""


class UnsupportedMilvus(FailedPrecondition):
    """The Milvus server is a version outside the supported range."""

    default_reason = "UNSUPPORTED_MILVUS_VERSION"


def is_lite_version(reported: str) -> bool:
    return reported.strip().lower().startswith(LITE_PREFIX)


def parse(reported: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a server's report such as "v2.3.5" or "2.3.5-gpu"; None if it has none."""
    match = _SERVER_VERSION.match(reported.strip())
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def refusal(reported: str, uri: str) -> str | None:
    """Why the backend at `uri` reporting `reported` is refused, or None when it is supported."""
    if is_lite_version(reported):
        return None
    version = parse(reported)
    if version is not None and SUPPORTED_MIN <= version < SUPPORTED_BELOW:
        return None
    what = f"version {reported!r}" if version is not None else f"a version that is not a Milvus release ({reported!r})"
    return (
        f"the Milvus server at {uri} is {what}; this indexer supports Milvus servers {SUPPORTED_RANGE}, "
        f'the versions its tests run (docs/deploy.md, "Supported Milvus"): deploy {DEPLOYED_IMAGE} '
        "(deploy/k8s/milvus) or set --milvus-uri / KINSHIP_MILVUS_URI to a supported server"
    )


def check(reported: str, uri: str) -> None:
    """Raises UnsupportedMilvus (FAILED_PRECONDITION) naming the supported range when `reported` is outside it."""
    reason = refusal(reported, uri)
    if reason is not None:
        raise UnsupportedMilvus(reason)
