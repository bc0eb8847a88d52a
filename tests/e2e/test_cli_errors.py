"""Issue 31, items 4, 6 and 7, as a user at the terminal meets them: `kinship serve all` as real
processes (a fresh data folder: its first enrolment happens here), the CLI as subprocesses.

4. Errors in CLI terms: every field violation, named by the flag that set it; `--json` errors as JSON
   on stdout; the exit-code table (0 ok, 1 refused, 2 usage, 3 unreachable, 4 partly done); "did you
   mean" for a relation; conflicting flags refused by argparse; `--top-n` as its help says.
6. `--pdf` without Chromium keeps the HTML, says how to install Chromium, exit 4.
7. `serve all` is quiet: a summary on the terminal, the services' JSON logs in DATA_DIR/logs; the first
   enrolment logs no ERROR (Milvus Lite's unimplemented AllocTimestamp no longer shows as tracebacks).
"""

from __future__ import annotations

import datetime
import json
import shutil

import pytest

from kinship.cli.sample import build_sample_images
from tests.e2e.test_gallery_cli import cli, ok
from tests.e2e.test_suite_end_to_end import serve_all


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    with serve_all(tmp_path_factory.mktemp("data")) as running:
        yield running


@pytest.fixture(scope="module")
def photos(suite, tmp_path_factory):
    """The sample gallery's 8 faces, as they are and mirrored (16 people, more than find's default 10)."""
    import cv2

    sample = tmp_path_factory.mktemp("sample")
    _, examples = build_sample_images(sample, suite["addresses"]["embedder"])
    twice = sample / "twice"
    twice.mkdir()
    for image in sorted(examples["gallery"].iterdir()):
        shutil.copy(image, twice / f"a-{image.name}")
        cv2.imwrite(str(twice / f"b-{image.name}"), cv2.flip(cv2.imread(str(image)), 1))
    return {"twice": twice, "query": examples["self"], "dir": sample}


@pytest.fixture(scope="module")
def enrolled(suite, photos):
    """The first enrolment of this fresh suite (its start and end kept in the suite, for its log lines)."""
    env = suite["env"]
    suite["first_enrolment"] = [_now()]
    report = json.loads(
        ok(cli(env, "enroll", str(photos["twice"]), "--person-per-file", "--no-journal", "--json")).stdout
    )
    suite["first_enrolment"].append(_now())
    assert report["person_count"] == 16
    return env


def _now() -> str:
    """UTC now as the services' log lines stamp it (structlog's ISO format), comparable as text."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# 4. errors in CLI terms ------------------------------------------------------------


def test_every_field_violation_is_named_by_its_flag(enrolled, photos):
    query = f"self={photos['query']}"
    refused = cli(enrolled, "find", "--relative", query, "--born-from", "1800", "--born-to", "1850", "--prior", "1.5")
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert lines[0] == "kinship find: INVALID_ARGUMENT: the request was refused, 3 problem(s):"
    assert lines[1].startswith("  --born-from: birth year must be 1900 to ") and "got 1800" in lines[1]
    assert lines[1].endswith("[missing_person.birth_year.min]")
    assert lines[2].startswith("  --born-to: birth year must be 1900 to ") and "got 1850" in lines[2]
    assert lines[3].startswith("  --prior: prior probability must be above 0 and below 1")
    assert "more problem(s), see the field violations" not in refused.stderr  # each one is shown instead

    as_json = cli(enrolled, "find", "--relative", query, "--birth-year", "1800", "--json")
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and error["exit_code"] == 1 and error["request_id"]
    assert error["message"].startswith("missing_person.birth_year.min: birth year must be 1900")
    assert [(v["field"], v["flag"]) for v in error["violations"]] == [
        ("missing_person.birth_year.min", "--birth-year"),
        ("missing_person.birth_year.max", "--birth-year"),
    ]
    assert all(v["description"].startswith("birth year must be 1900 to ") for v in error["violations"])


def test_a_photo_without_a_face_names_the_relative_and_the_file(enrolled, photos, tmp_path):
    import cv2
    import numpy as np

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    typed = f"self={photos['query']},{blank}"
    done = cli(enrolled, "find", "--relative", typed)
    assert done.returncode == 1
    assert f"  --relative {typed} (photo {blank}): no face found in the photo of 'self'" in done.stderr
    error = json.loads(cli(enrolled, "find", "--relative", typed, "--json").stdout)["error"]
    ((violation),) = error["violations"]
    assert (
        violation["field"] == "relatives[0].photos[1].image"
        and violation["flag"] == f"--relative {typed} (photo {blank})"
    )
    assert error["reason"] == "NO_FACE"


def test_a_mistyped_relation_gets_a_suggestion(enrolled, photos):
    for typed, meant in (("fathr", "father"), ("dad", "father"), ("grandma", "grandmother"), ("sistr", "sister")):
        done = cli(enrolled, "find", "--relative", f"{typed}={photos['query']}")
        assert done.returncode == 2, done.stderr
        assert "relation must be one of father, mother" in done.stderr and f"did you mean {meant}?" in done.stderr
    as_json = cli(enrolled, "find", "--relative", f"fathr={photos['query']}", "--json")
    assert as_json.returncode == 2
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "USAGE" and error["exit_code"] == 2 and "did you mean father?" in error["message"]


def test_conflicting_and_unknown_flags_are_usage_errors(enrolled, photos):
    query = f"self={photos['query']}"
    for window in (("--born-from", "1950"), ("--born-to", "1960")):
        done = cli(enrolled, "find", "--relative", query, "--birth-year", "1956", *window)
        assert done.returncode == 2 and done.stdout == ""
        assert f"argument {window[0]}: not allowed with argument --birth-year" in done.stderr
        assert done.stderr.startswith("usage: kinship find ")
    as_json = cli(enrolled, "find", "--relative", query, "--birth-year", "1956", "--born-from", "1950", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"] == {
        "code": "USAGE",
        "message": "argument --born-from: not allowed with argument --birth-year",
        "exit_code": 2,
        "violations": [],
    }
    journal = cli(enrolled, "enroll", str(photos["twice"]), "--journal", "/tmp/x", "--no-journal")
    assert journal.returncode == 2 and "not allowed with argument" in journal.stderr
    # An unknown flag: the sub-command's usage, not the top-level one.
    unknown = cli(enrolled, "find", "--relative", query, "--count", "3")
    assert unknown.returncode == 2 and unknown.stderr.startswith("usage: kinship find ")
    assert "kinship find: error: unrecognized arguments: --count 3" in unknown.stderr


def test_top_n_does_what_its_help_says(enrolled, photos):
    query = f"self={photos['query']}"
    help_text = " ".join(ok(cli(enrolled, "find", "--help")).stdout.split())
    assert "how many candidates, 1 to 500 [default 10]; 0 leaves it to the ranker, which then returns 20" in help_text
    default = json.loads(ok(cli(enrolled, "find", "--relative", query, "--json")).stdout)
    assert len(default["candidates"]) == 10
    zero = json.loads(ok(cli(enrolled, "find", "--relative", query, "--top-n", "0", "--json")).stdout)
    assert len(zero["candidates"]) == 16  # the ranker's 20, of the 16 people there are
    too_many = cli(enrolled, "find", "--relative", query, "--top-n", "501")
    assert too_many.returncode == 2 and "argument --top-n: must be 1 to 500" in too_many.stderr


def test_exit_codes_are_documented_and_unreachable_is_3(enrolled, photos):
    top = " ".join(ok(cli(enrolled, "--help")).stdout.split())
    for line in ("exit codes:", "0 done", "1 refused or not done", "2 usage", "3 unreachable or busy", "4 partly done"):
        assert line in top
    away = dict(enrolled, KINSHIP_RANKER_ADDRESS="127.0.0.1:1")
    done = cli(away, "find", "--relative", f"self={photos['query']}")
    assert done.returncode == 3 and "kinship find: UNAVAILABLE: " in done.stderr
    assert "is `kinship serve all` running?" in done.stderr
    error = json.loads(cli(away, "find", "--relative", f"self={photos['query']}", "--json").stdout)["error"]
    assert error["code"] == "UNAVAILABLE" and error["exit_code"] == 3
    unconfirmed = cli(enrolled, "delete", "--person", "a-tom-hanks", "--json")  # no terminal to ask, no --yes
    assert unconfirmed.returncode == 2 and unconfirmed.stderr == ""
    refusal = json.loads(unconfirmed.stdout)["error"]
    assert refusal["code"] == "USAGE" and "add --yes to erase them" in refusal["message"]
    missing = cli(enrolled, "embed", str(photos["dir"] / "no-such.jpg"), "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["message"].startswith("cannot read")


# 6. --pdf without Chromium ----------------------------------------------------------


def test_pdf_without_chromium_keeps_the_html(enrolled, photos, tmp_path):
    no_browser = tmp_path / "bin"  # a PATH where no chromium is
    no_browser.mkdir()
    env = dict(enrolled, PATH=str(no_browser))
    query = f"self={photos['query']}"
    html, pdf = tmp_path / "case.html", tmp_path / "case.pdf"
    done = cli(env, "find", "--relative", query, "--report", str(html), "--pdf", str(pdf), "--top-n", "3")
    assert done.returncode == 4, done.stderr
    assert "candidate(s) of" in done.stdout  # the search's answer is out
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") and not pdf.exists()
    assert f"the PDF {pdf} was not written; the HTML report is kept at {html}" in done.stderr
    assert "sudo apt-get install chromium" in done.stderr and "kinship report case --response" in done.stderr

    # --pdf alone: the HTML is kept beside it; --json's stdout is still the response.
    alone = tmp_path / "alone.pdf"
    as_json = cli(env, "find", "--relative", query, "--pdf", str(alone), "--top-n", "3", "--json")
    assert as_json.returncode == 4
    saved = tmp_path / "saved.json"
    saved.write_text(as_json.stdout)
    assert len(json.loads(as_json.stdout)["candidates"]) == 3
    assert (tmp_path / "alone.html").exists() and not alone.exists()

    # The same from a saved response.
    again = tmp_path / "again.pdf"
    report = cli(env, "report", "case", "--response", str(saved), "--relative", query, "--pdf", str(again))
    assert report.returncode == 4 and (tmp_path / "again.html").exists() and not again.exists()
    assert "--pdf needs a headless Chromium" in report.stderr


# 7. quiet terminal, JSON logs in a file, no ERROR on the first enrolment -------------


def test_serve_all_is_quiet_and_the_first_enrolment_logs_no_error(suite, enrolled):
    terminal = suite["log"].read_text()
    logs = suite["data_dir"] / "logs"
    assert f"kinship: the services' logs are in {logs}" in terminal
    assert not [line for line in terminal.splitlines() if line.lstrip().startswith("{")], terminal[-2000:]
    # The start-up's warnings, once each with the services that gave them.
    (plaintext,) = [line for line in terminal.splitlines() if "warning: serving PLAINTEXT" in line]
    assert all(name in plaintext.split(" warning: ")[0] for name in ("embedder", "indexer", "ranker"))
    assert "service not ready" not in terminal  # the ranker's, while the others started: over once SERVING
    records = []
    for service in ("embedder", "indexer", "ranker"):
        for line in (logs / f"{service}.log").read_text().splitlines():
            records.append(json.loads(line))  # every line is JSON, the libraries' too
    started, ended = suite["first_enrolment"]
    during = [r for r in records if started <= r.get("timestamp", "") <= ended]
    assert any(r.get("event") == "created collection" for r in during)  # the enrolment created the collections
    errors = [r for r in during if r.get("level") in ("error", "critical", "exception")]
    assert errors == [], json.dumps(errors, indent=1)[:4000]
    assert not any("Method not implemented" in json.dumps(r) for r in records)
    assert "Traceback" not in terminal and " error: " not in terminal
