from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kinship.cli import client_commands as cc
from kinship.cli.main import build_parser
from kinship.v1 import common_pb2, embedder_pb2


def _enroll_args(tmp_path: Path, *argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["enroll", *argv])


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff fake jpeg")
    return path


def test_folder_layout_names_people(tmp_path: Path) -> None:
    _touch(tmp_path / "g" / "alice.jpg")
    _touch(tmp_path / "g" / "bob" / "1.png")
    _touch(tmp_path / "g" / "bob" / "2.JPG")
    _touch(tmp_path / "g" / "notes.txt")
    items = cc.collect_items(_enroll_args(tmp_path, str(tmp_path / "g"), "--sex", "f", "--birth-year", "1990"))
    assert sorted((i.path.name, i.person_id) for i in items) == [
        ("1.png", "bob"),
        ("2.JPG", "bob"),
        ("alice.jpg", "alice"),
    ]
    assert all(i.attributes.sex == common_pb2.SEX_FEMALE and i.attributes.birth_year == 1990 for i in items)


def test_person_id_flag_wins_and_missing_path_is_an_error(tmp_path: Path) -> None:
    img = _touch(tmp_path / "x.jpg")
    (item,) = cc.collect_items(_enroll_args(tmp_path, str(img), "--person-id", "p-7"))
    assert item.person_id == "p-7"
    with pytest.raises(cc.CommandError, match="does not exist"):
        cc.collect_items(_enroll_args(tmp_path, str(tmp_path / "nope.jpg")))


def test_manifest_rows_set_person_and_attributes(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,person_id,birth_year,sex,region\na.jpg,p1,1999,m,IT-MI\n")
    (item,) = cc.collect_items(_enroll_args(tmp_path, "--manifest", str(manifest)))
    assert item.person_id == "p1" and item.path == (tmp_path / "a.jpg").resolve()
    assert (item.attributes.birth_year, item.attributes.sex, item.attributes.region) == (
        1999,
        common_pb2.SEX_MALE,
        "IT-MI",
    )
    manifest.write_text("path,person_id,birth_year\na.jpg,p1,ninety\n")
    with pytest.raises(cc.CommandError, match="line 2: birth_year 'ninety'"):
        cc.collect_items(_enroll_args(tmp_path, "--manifest", str(manifest)))


def test_relative_syntax(tmp_path: Path) -> None:
    a, b = _touch(tmp_path / "a.jpg"), _touch(tmp_path / "b.jpg")
    rel = cc.parse_relative(f"sister:anna={a},{b}", 0)
    assert rel.relation == common_pb2.RELATION_SIBLING and rel.label == "anna" and len(rel.photos) == 2
    with pytest.raises(cc.CommandError, match="relation must be one of"):
        cc.parse_relative(f"uncle={a}", 0)
    with pytest.raises(cc.CommandError, match="RELATION=IMAGE"):
        cc.parse_relative("father", 0)


def test_find_request_from_flags(tmp_path: Path) -> None:
    a = _touch(tmp_path / "dad.jpg")
    args = build_parser().parse_args(
        ["find", "--relative", f"father={a}", "--sex", "m", "--birth-year", "1999", "--region", "R1", "--top-n", "3"]
    )
    req = cc.build_find_request(args)
    assert req.top_n == 3
    assert req.missing_person.sex == common_pb2.SEX_MALE
    assert (req.missing_person.birth_year.min, req.missing_person.birth_year.max) == (1999, 1999)
    assert list(req.missing_person.regions) == ["R1"]


def test_most_prominent_face_weighs_area_and_score() -> None:
    def face(w, h, score):
        f = embedder_pb2.Face(detection_score=score)
        f.box.x_max, f.box.y_max = w, h
        return f

    faces = [face(10, 10, 0.99), face(40, 40, 0.7), face(30, 30, 0.95)]
    assert cc.most_prominent(faces) == 1
