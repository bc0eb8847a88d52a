"""buf over the contracts: the lint rules, and that kinship.v1 only grows since it was published.

buf comes from npm (`make check-contracts` installs it into .buf/; CI's .ci/run does the
same). Without it the test skips with the reason here, and fails in CI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
#: The commit that first published kinship.v1: nothing of it may be renamed, renumbered or removed.
CONTRACTS_BORN = "1915285"


def _buf() -> str:
    local = ROOT / ".buf" / "node_modules" / ".bin" / "buf"
    found = str(local) if local.exists() else shutil.which("buf")
    if found:
        return found
    message = "buf not installed (run `make check-contracts`, which installs it from npm into .buf/)"
    if IN_CI:
        pytest.fail(message + "; .ci/run must install it", pytrace=False)
    pytest.skip(message)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_buf(), *args], cwd=ROOT / "protos", capture_output=True, text=True, timeout=120)


def test_buf_lint_passes() -> None:
    result = _run("lint", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_kinship_v1_only_grows_since_it_was_published(tmp_path: Path) -> None:
    # The published protos come out of git's history as files (buf's own git input clones
    # shallowly and loses old commits as history grows).
    archive = subprocess.run(["git", "archive", CONTRACTS_BORN, "protos"], cwd=ROOT, capture_output=True)
    assert archive.returncode == 0, f"commit {CONTRACTS_BORN} (the first kinship.v1) is not in this clone's history"
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    result = _run("breaking", ".", "--against", str(tmp_path / "protos"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_breaking_check_can_fail(tmp_path: Path) -> None:
    """A field renumbered in a copy of the contracts is reported: the check above is not vacuous."""
    copy = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", copy)
    common = copy / "kinship" / "v1" / "common.proto"
    common.write_text(common.read_text().replace("string region = 3;", "string region = 13;"))
    result = subprocess.run(
        [_buf(), "breaking", str(copy), "--against", str(ROOT / "protos")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "region" in result.stdout + result.stderr, result.stdout + result.stderr
