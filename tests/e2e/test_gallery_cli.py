"""Issue 31, items 1, 2 and 5, as a user at the terminal meets them: `kinship serve all` as real
processes, the CLI as subprocesses, the sample gallery's images (kinship.cli.sample: photos from
installed packages, never a data set's).

1. `kinship people` and `kinship delete` inspect and repair a gallery; enrolment summaries name the
   people; `enroll --person-per-file` and `--dry-run`.
2. `--aligned` on embed, enroll, find and compare: 112x112 (or smaller) aligned crops, no detection.
5. `find --sex` / birth-year filters say how many records they left out for an unknown fact, and
   `--include-unknown` keeps them.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import cv2
import numpy as np
import pytest
from insightface.utils import face_align

from kinship.cli.sample import build_sample_images
from tests.e2e.test_suite_end_to_end import serve_all

GROUP = [f"group-person-{n}" for n in range(1, 7)]


def cli(env: dict[str, str], *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kinship.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        stdin=stdin,
    )


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def on_a_terminal(env: dict[str, str], answer: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI with a terminal as stdin (a pty) to which `answer` is typed."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "kinship.cli.main", *args],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        os.write(leader, answer.encode() + b"\n")
        stdout, stderr = process.communicate(timeout=300)
    finally:
        os.close(leader)
        os.close(follower)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    with serve_all(tmp_path_factory.mktemp("data")) as running:
        yield running


@pytest.fixture(scope="module")
def photos(suite, tmp_path_factory):
    """The sample gallery's photos, laid out as a data set of relation folders, and the example query."""
    sample = tmp_path_factory.mktemp("sample")
    _, examples = build_sample_images(sample, suite["addresses"]["embedder"])
    gallery = examples["gallery"]
    relations = sample / "relations"
    for folder, people in (("fs", GROUP[:3]), ("md", GROUP[3:])):
        (relations / folder).mkdir(parents=True)
        for person in people:
            (relations / folder / f"{person}.jpg").write_bytes((gallery / f"{person}.jpg").read_bytes())
    return {"relations": relations, "gallery": gallery, "query": examples["self"], "dir": sample}


@pytest.fixture(scope="module")
def enrolled(suite, photos):
    """The six group faces (no birth year, no sex) one person per file, and two portraits with their facts."""
    env = suite["env"]
    done = ok(cli(env, "enroll", str(photos["relations"]), "--person-per-file", "--source", "sample", "--no-journal"))
    assert "6 person(s): " + ", ".join(GROUP) in done.stdout
    for person, sex in (("tom-hanks", "m"), ("eileen-collins", "f")):
        path = photos["gallery"] / f"{person}.png"
        args = ["enroll", str(path), "--birth-year", "1956", "--sex", sex, "--region", "US", "--no-journal", "--json"]
        report = json.loads(ok(cli(env, *args)).stdout)
        assert report["person_ids"] == [person] and report["person_count"] == 1
    return env


# 1. people, delete, enrolment summaries, --person-per-file, --dry-run ---------------------


def test_dry_run_lists_people_and_files_and_enrols_nothing(suite, photos):
    env = suite["env"]
    by_folder = json.loads(ok(cli(env, "enroll", str(photos["relations"]), "--dry-run", "--json")).stdout)
    assert by_folder["dry_run"] is True and by_folder["image_count"] == 6
    assert [p["person_id"] for p in by_folder["people"]] == ["fs", "md"]  # the folder rule: a folder is a person
    per_file = ok(cli(env, "enroll", str(photos["relations"]), "--dry-run", "--person-per-file"))
    assert "dry run: 6 image(s) would be enrolled as 6 person(s):" in per_file.stdout
    for person in GROUP:
        assert f"  {person} (1 image(s))" in per_file.stdout
    assert str(photos["relations"] / "fs" / "group-person-1.jpg") in per_file.stdout
    assert "nothing was enrolled" in per_file.stdout
    # No service was called: the dry run works with the suite out of reach.
    away = dict(env, KINSHIP_EMBEDDER_ADDRESS="127.0.0.1:1", KINSHIP_INDEXER_ADDRESS="127.0.0.1:1")
    assert ok(cli(away, "enroll", str(photos["relations"]), "--dry-run", "--person-per-file")).stdout == per_file.stdout
    # A person id for all and one per file contradict each other.
    both = cli(env, "enroll", str(photos["relations"]), "--person-per-file", "--person-id", "x", "--dry-run")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_people_lists_persons_records_facts_and_models(enrolled):
    listing = json.loads(ok(cli(enrolled, "people", "--json")).stdout)
    assert listing["tenant"] == "default"
    ids = [p["person_id"] for p in listing["people"]]
    assert ids == sorted(["eileen-collins", "tom-hanks", *GROUP])
    assert listing["person_count"] == 8 and listing["record_count"] == 8 and listing["not_found"] == []
    hanks = next(p for p in listing["people"] if p["person_id"] == "tom-hanks")
    # The identity model, and the shipped kinship model's vectors and the family query's combined ones.
    assert len(hanks["models"]) == 3 and any(m.startswith("kinship-") for m in hanks["models"])
    (record,) = hanks["records"]
    assert (record["birth_year"], record["sex"], record["region"]) == (1956, "male", "US")
    assert record["record_id"].startswith("tom-hanks:") and record["models"] == hanks["models"]
    assert record["enrolled_at"]

    text = ok(cli(enrolled, "people", "--person", "tom-hanks", "group-person-1")).stdout
    assert text.splitlines()[0] == "2 person(s), 2 record(s) in tenant default"
    assert "tom-hanks  1 record(s); models: " in text and "born 1956, male, US, source cli" in text
    assert "birth year unknown, sex unknown, source sample" in text

    missing = cli(enrolled, "people", "--person", "tom-hanks", "--person", "nobody", "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["not_found"] == ["nobody"]
    assert "no records of person 'nobody' in tenant default" in missing.stderr


def test_delete_asks_on_a_terminal_refuses_without_one_and_erases_with_yes(enrolled, photos):
    # A mistaken enrolment: the same photo under a second person id leaves a ghost.
    ok(cli(enrolled, "enroll", str(photos["gallery"] / "tom-hanks.png"), "--person-id", "hanks-typo", "--no-journal"))
    assert "hanks-typo" in ok(cli(enrolled, "people")).stdout

    refused = cli(enrolled, "delete", "--person", "hanks-typo")
    assert refused.returncode == 2
    assert "not erasing hanks-typo without confirmation" in refused.stderr and "--yes" in refused.stderr
    assert "hanks-typo" in ok(cli(enrolled, "people")).stdout

    declined = on_a_terminal(enrolled, "n", "delete", "--person", "hanks-typo")
    assert declined.returncode == 1, declined.stderr
    assert "Erase 1 record(s) of 1 person(s) (hanks-typo) from every collection?" in declined.stderr
    assert "not confirmed; nothing erased" in declined.stderr
    assert "hanks-typo" in ok(cli(enrolled, "people")).stdout

    confirmed = on_a_terminal(enrolled, "y", "delete", "--person", "hanks-typo")
    assert confirmed.returncode == 0, confirmed.stderr
    # One record, in each of the three collections.
    assert "erased 3 record(s) of hanks-typo from every collection of tenant default" in confirmed.stdout
    assert "hanks-typo" not in ok(cli(enrolled, "people")).stdout

    ok(cli(enrolled, "enroll", str(photos["gallery"] / "tom-hanks.png"), "--person-id", "hanks-typo", "--no-journal"))
    erased = json.loads(ok(cli(enrolled, "delete", "--person", "hanks-typo", "--yes", "--json")).stdout)
    assert erased == {"person_ids": ["hanks-typo"], "deleted_count": 3, "tenant": "default"}

    again = cli(enrolled, "delete", "--person", "hanks-typo", "--yes")
    assert again.returncode == 1 and "no records of hanks-typo in tenant default: nothing erased" in again.stderr
    assert "tom-hanks" in ok(cli(enrolled, "people")).stdout  # the real person is untouched


# 2. --aligned -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aligned_crops(suite, photos):
    """The portrait's face aligned to the 112x112 template (from the embedder's landmarks), and a tight
    64x64 copy, as research data sets ship them."""
    env = suite["env"]
    portrait = photos["gallery"] / "tom-hanks.png"
    faces = json.loads(ok(cli(env, "embed", str(portrait), "--json")).stdout)["faces"]
    landmarks = np.array([[p["x"], p["y"]] for p in faces[0]["landmarks"]], dtype=np.float32)
    crop = face_align.norm_crop(cv2.imread(str(portrait)), landmarks, image_size=112)
    big, small = photos["dir"] / "hanks-aligned-112.png", photos["dir"] / "hanks-aligned-64.png"
    cv2.imwrite(str(big), crop)
    cv2.imwrite(str(small), cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA))
    return big, small


def test_embed_aligned_skips_detection(suite, aligned_crops):
    for crop in aligned_crops:
        reply = json.loads(ok(cli(suite["env"], "embed", str(crop), "--aligned", "--json")).stdout)
        (face,) = reply["faces"]
        assert face["pre_aligned"] is True and face["landmarks"] == []
        assert abs(np.linalg.norm(face["embedding"]) - 1) < 1e-3
    help_text = ok(cli(suite["env"], "embed", "--help")).stdout
    assert "--aligned" in help_text and "112x112" in help_text


def test_enroll_find_and_compare_take_aligned_crops(enrolled, aligned_crops):
    big, small = aligned_crops
    report = json.loads(
        ok(
            cli(enrolled, "enroll", str(small), "--aligned", "--person-id", "hanks-crop", "--no-journal", "--json")
        ).stdout
    )
    assert report["person_ids"] == ["hanks-crop"] and len(report["enrolled"]) == 1 and report["skipped"] == []

    found = json.loads(ok(cli(enrolled, "find", "--relative", f"self={big}", "--aligned", "--json")).stdout)
    top = [c["person_id"] for c in found["candidates"][:2]]
    assert sorted(top) == ["hanks-crop", "tom-hanks"], top

    compared = json.loads(
        ok(
            cli(
                enrolled,
                "compare",
                "--relative",
                f"self={small}",
                "--aligned",
                "--candidate-person",
                "tom-hanks",
                "--json",
            )  # fmt: skip
        ).stdout
    )
    assert compared["candidate"]["evidence"][0]["similarity"] > 0.5
    for command in ("enroll", "find", "compare"):
        assert "--aligned" in ok(cli(enrolled, command, "--help")).stdout
    ok(cli(enrolled, "delete", "--person", "hanks-crop", "--yes"))


# 5. filters say what they drop --------------------------------------------------------------


def test_find_says_how_many_records_its_filters_left_out_and_include_unknown_keeps_them(enrolled, photos):
    query = ["find", "--relative", f"self={photos['query']}", "--sex", "m", "--born-from", "1950", "--born-to", "1960"]
    text = ok(cli(enrolled, *query)).stdout
    # The six group faces have neither a birth year nor a sex on record.
    assert "6 records without a birth year were not considered; --include-unknown to keep them" in text
    assert "6 records of unknown sex were not considered; --include-unknown to keep them" in text

    reply = json.loads(ok(cli(enrolled, *query, "--json")).stdout)
    assert [c["person_id"] for c in reply["candidates"]] == ["tom-hanks"]
    assert reply["excluded_unknown"] == {"birth_year": "6", "sex": "6"}

    kept = json.loads(ok(cli(enrolled, *query, "--include-unknown", "--json")).stdout)
    assert kept["candidates_considered"] == 7  # tom-hanks and the six faces of unknown facts
    assert kept["candidates"][0]["person_id"] == "tom-hanks"
    assert kept["excluded_unknown"] == {"birth_year": "0", "sex": "0"}
    assert "not considered" not in ok(cli(enrolled, *query, "--include-unknown")).stdout
    # Without a sex or birth-year filter nothing is left out, and nothing is said.
    plain = ok(cli(enrolled, "find", "--relative", f"self={photos['query']}")).stdout
    assert "not considered" not in plain
    assert "--include-unknown" in ok(cli(enrolled, "find", "--help")).stdout
