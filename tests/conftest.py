"""Fixtures shared by every test layer.

`../shared` (models and the KinFaceW-I data set beside the project) is read in place,
never copied. Where it is missing, tests that need it skip with the reason, except
in CI (CI=true), where a missing ../shared is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True, scope="session")
def _quiet_service_logs():
    """In-process servers log through structlog; keep test output to warnings and errors."""
    from kinship.runtime.logs import configure_logging

    configure_logging(level="warning", fmt="console")


@pytest.fixture(autouse=True, scope="session")
def _private_data_home(tmp_path_factory):
    """Servers started without a data dir (audit trail, artifacts, Milvus Lite) use a folder of the session's own,
    never the real ~/.local/share/kinship-search (where a developer's trained artifact or audit trail lives)."""
    previous = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data-home"))
    yield
    if previous is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = previous


def require_path(path: Path, what: str) -> Path:
    """Returns `path`, or skips (fails in CI) with a reason naming what is missing."""
    if path.exists():
        return path
    message = f"{what} not found at {path} (../shared beside the project)"
    if IN_CI:
        pytest.fail(message + "; CI must have it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_path(SHARED, "the shared folder")


@pytest.fixture(scope="session")
def kinfacew_dir(shared_dir: Path) -> Path:
    return require_path(shared_dir / "data" / "kinfacew-i", "the KinFaceW-I data set")


def free_ports(count: int) -> list[int]:
    """`count` different TCP ports free on loopback right now (for subprocesses that need fixed ones).

    Every socket stays bound until all are picked, so the ports are distinct.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_port() -> int:
    """One TCP port free on loopback right now."""
    return free_ports(1)[0]


def sample_image(name: str) -> bytes:
    """An image shipped inside the insightface wheel: t1.jpg (6 faces), Tom_Hanks_54745.png (1 face)."""
    return (resources.files("insightface") / "data" / "images" / name).read_bytes()


@pytest.fixture(scope="session")
def group_photo() -> bytes:
    """insightface's t1.jpg: a group photo with 6 faces."""
    return sample_image("t1.jpg")


@pytest.fixture(scope="session")
def portrait_photo() -> bytes:
    """insightface's Tom_Hanks_54745.png: one face."""
    return sample_image("Tom_Hanks_54745.png")
