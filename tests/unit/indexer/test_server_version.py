"""The supported Milvus server range, and the indexer's refusal at start of a server outside it.

The refusal is tested over a hand-written fake of the adapter's `ServerVersioned` interface
(`uri`, `server_version()`): no Milvus and no pymilvus involved.
"""

from __future__ import annotations

import pytest

from kinship.indexer import bootstrap
from kinship.indexer.domain import server_version
from kinship.runtime import deadlines
from kinship.runtime.errors import ConfigError, DeadlineExceeded, Unavailable

URI = "http://milvus.example:19530"


class FakeBackend:
    """A gallery backend that reports a fixed version, or does not answer."""

    def __init__(self, reported: str | None = None, failure: Exception | None = None):
        self.reported = reported
        self.failure = failure
        self.asked = 0

    @property
    def uri(self) -> str:
        return URI

    def server_version(self) -> str:
        self.asked += 1
        if self.failure is not None:
            raise self.failure
        assert self.reported is not None
        return self.reported


@pytest.mark.parametrize("reported", ["v2.3.5", "v2.3.5-lite", "2.3.5", "v2.3.9", "v2.3.21", "v2.3.5-gpu", " v2.3.6 "])
def test_the_tested_minor_line_from_the_tested_patch_up_is_supported(reported):
    assert server_version.refusal(reported, URI) is None
    server_version.check(reported, URI)


@pytest.mark.parametrize(
    "reported",
    ["v2.3.4", "v2.3.0", "v2.2.16", "v2.4.0", "v2.4.17", "v2.5.4", "v2.6.0", "v3.0.0", "v12.3.5", "v2.35.0"],
)
def test_servers_outside_the_range_are_refused_with_the_range_and_the_fix(reported):
    reason = server_version.refusal(reported, URI)
    assert reason is not None
    for words in (URI, repr(reported), ">= 2.3.5, < 2.4.0", "milvusdb/milvus:v2.3.5", "docs/deploy.md"):
        assert words in reason, (words, reason)
    with pytest.raises(server_version.UnsupportedMilvus) as caught:
        server_version.check(reported, URI)
    assert caught.value.status_name == "FAILED_PRECONDITION" and caught.value.reason == "UNSUPPORTED_MILVUS_VERSION"


@pytest.mark.parametrize("reported", ["", "unknown", "Zilliz Cloud (compatible with Milvus 2.3)", "2.3", "v2.x.5"])
def test_a_report_that_is_no_milvus_release_is_refused(reported):
    reason = server_version.refusal(reported, URI)
    assert reason is not None and "not a Milvus release" in reason


@pytest.mark.parametrize("reported", ["milvus_lite-3.2.2", "milvus_lite-9.0.0", "Milvus_Lite-1.0"])
def test_milvus_lite_is_accepted_on_its_own_report(reported):
    # Lite's number is its own (3.x), not a server's; the package pin decides which Lite runs.
    assert server_version.refusal(reported, URI) is None


def test_parse_reads_major_minor_patch():
    assert server_version.parse("v2.3.5") == (2, 3, 5)
    assert server_version.parse("2.4.17-gpu") == (2, 4, 17)
    assert server_version.parse("milvus_lite-3.2.2") is None
    assert server_version.parse("v2.3") is None


def test_start_up_refuses_an_unsupported_server_with_one_config_error():
    backend = FakeBackend("v2.5.4")
    with pytest.raises(ConfigError) as caught:
        bootstrap.refuse_unsupported_milvus(backend)
    message = str(caught.value)
    assert "'v2.5.4'" in message and ">= 2.3.5, < 2.4.0" in message and URI in message
    assert backend.asked == 1


def test_start_up_accepts_a_supported_server_and_says_its_version():
    assert bootstrap.refuse_unsupported_milvus(FakeBackend("v2.3.5")) == "v2.3.5"


def test_start_up_turns_the_adapters_own_refusal_into_a_config_error():
    # The real adapter refuses while connecting: its server_version raises UnsupportedMilvus itself.
    refused = server_version.UnsupportedMilvus(server_version.refusal("v2.4.1", URI) or "")
    with pytest.raises(ConfigError, match="2.4.1"):
        bootstrap.refuse_unsupported_milvus(FakeBackend(failure=refused))


@pytest.mark.parametrize(
    "failure", [Unavailable(f"cannot connect to Milvus at {URI}"), DeadlineExceeded("the call's deadline passed")]
)
def test_a_server_that_does_not_answer_at_start_leaves_the_check_to_the_connection(failure):
    # The indexer starts NOT_SERVING (its convention for an unreachable Milvus); the adapter checks on connecting.
    assert bootstrap.refuse_unsupported_milvus(FakeBackend(failure=failure)) is None


def test_the_start_up_check_is_bounded_by_its_timeout():
    seen = []

    class Timed(FakeBackend):
        def server_version(self) -> str:
            seen.append(deadlines.remaining(100.0))
            return "v2.3.5"

    bootstrap.refuse_unsupported_milvus(Timed(), timeout=2.0)
    assert 0 < seen[0] <= 2.0
