"""docs/client.md's examples, run as written against the real suite, so they cannot rot.

Each ```python block runs in a fresh interpreter, in a folder holding what the page says
the examples need: `gallery/` (the sample gallery, made from installed packages' photos) and
`query.jpg` (a mirrored, rescaled photo of Tom Hanks, who is in it); KINSHIP_*_ADDRESS point
at the suite of this module (its own gallery).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.integration.test_client_sdk import suite  # noqa: F401 - the module's own suite

DOC = ROOT / "docs" / "client.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def workdir(suite, tmp_path_factory):  # noqa: F811 - the imported fixture
    folder = tmp_path_factory.mktemp("client-docs")
    shutil.copytree(suite.gallery, folder / "gallery")
    shutil.copy(suite.query, folder / "query.jpg")
    env = dict(os.environ, XDG_STATE_HOME=str(folder / "state"))
    env.update({f"KINSHIP_{name.upper()}_ADDRESS": address for name, address in suite.target.items()})
    return folder, env


def run(code: str, workdir) -> str:
    folder, env = workdir
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"the example failed:\n{code}\n--- stderr ---\n{done.stderr}"
    return done.stdout


def test_the_page_has_its_sync_async_and_error_examples():
    codes = examples()
    assert len(codes) == 4
    assert "KinshipClient()" in codes[0] and "AsyncKinshipClient" in codes[1] and "InvalidArgument" in codes[2]
    assert "client.people()" in codes[3]


def test_enrol_then_search(workdir):
    out = run(examples()[0], workdir)
    assert "serving: True" in out
    assert "8 enrolled, 0 duplicates, 0 refused" in out
    assert re.search(r"^1 tom-hanks log10 LR ", out, flags=re.M), out
    assert "records: ['tom-hanks:" in out
    assert list((workdir[0] / "state").rglob("*.jsonl")) == []  # the finished run removed its journal


def test_asyncio(workdir):
    run(examples()[0], workdir)  # the gallery the example compares against
    lines = run(examples()[1], workdir).splitlines()
    assert [line.split()[0] for line in lines] == ["tom-hanks", "eileen-collins"]


def test_people(workdir):
    run(examples()[0], workdir)  # the gallery the example lists
    out = run(examples()[3], workdir).splitlines()
    assert out[0] == "8 people: ['eileen-collins', 'group-person-1', 'group-person-2']", out
    assert out[1].startswith("eileen-collins 1 record(s) in ('"), out


def test_errors(workdir):
    out = run(examples()[2], workdir)
    assert "relatives[0].photos[0]" in out and "not found:" in out and "request " in out
