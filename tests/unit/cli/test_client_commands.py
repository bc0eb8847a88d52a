from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from kinship.cli import client_commands as cc
from kinship.cli.main import build_parser
from kinship.client.enrolment import EnrolReport
from kinship.v1 import common_pb2, embedder_pb2, ranker_pb2


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
    assert rel.relation == common_pb2.RELATION_SISTER and rel.label == "anna" and len(rel.photos) == 2
    assert cc.parse_relative(f"brother={a}", 0).relation == common_pb2.RELATION_BROTHER
    assert cc.parse_relative(f"sibling={a}", 0).relation == common_pb2.RELATION_SIBLING
    with pytest.raises(cc.CommandError, match="relation must be one of"):
        cc.parse_relative(f"uncle={a}", 0)
    with pytest.raises(cc.CommandError, match="RELATION=IMAGE"):
        cc.parse_relative("father", 0)


def test_grandparents_parse_and_are_in_the_help(tmp_path: Path, capsys) -> None:
    a = _touch(tmp_path / "a.jpg")
    grandpa = cc.parse_relative(f"grandfather={a}", 0)
    assert grandpa.relation == common_pb2.RELATION_GRANDFATHER == 7 and grandpa.label == ""
    granny = cc.parse_relative(f"Grandmother@1970:nonna={a}", 1)
    assert granny.relation == common_pb2.RELATION_GRANDMOTHER == 8 and granny.label == "nonna"
    assert granny.photos[0].capture_year == 1970
    args = build_parser().parse_args(["find", "--relative", f"grandmother={a}", "--relative", f"father={a}"])
    relations = [r.relation for r in cc.build_find_request(args).relatives]
    assert relations == [common_pb2.RELATION_GRANDMOTHER, common_pb2.RELATION_FATHER]
    with pytest.raises(cc.CommandError, match="grandfather, grandmother"):
        cc.parse_relative(f"grandson={a}", 0)
    for command in ("find", "compare"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert "grandfather, grandmother" in " ".join(capsys.readouterr().out.split())


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


# --- dates of photos, the prior, compare ---------------------------------------------------


def test_a_relative_may_say_when_its_photos_were_taken(tmp_path: Path) -> None:
    a, b = _touch(tmp_path / "kid.jpg"), _touch(tmp_path / "kid2.jpg")
    aged = cc.parse_relative(f"self@6:young={a},{b}", 0)
    assert aged.label == "young" and [p.age_at_photo for p in aged.photos] == [6.0, 6.0]
    assert not aged.photos[0].HasField("capture_year")
    dated = cc.parse_relative(f"self@1998={a}", 0)
    assert dated.photos[0].capture_year == 1998 and not dated.photos[0].HasField("age_at_photo")
    assert cc.parse_relative(f"self@4.5={a}", 0).photos[0].age_at_photo == 4.5
    for bad in ("self@soon", "self@1850", "self@-3", "self@"):
        with pytest.raises(cc.CommandError, match="after @|year the photo was taken"):
            cc.parse_relative(f"{bad}={a}", 0)
    # The date belongs to the relation, before the label; after it, it would silently become the label.
    with pytest.raises(cc.CommandError, match="date goes before the label"):
        cc.parse_relative(f"father:dad@1990={a}", 0)


def test_find_sends_the_prior(tmp_path: Path) -> None:
    a = _touch(tmp_path / "dad.jpg")
    args = build_parser().parse_args(["find", "--relative", f"father={a}", "--prior", "0.01"])
    assert cc.build_find_request(args).prior_probability == 0.01
    default = build_parser().parse_args(["find", "--relative", f"father={a}"])
    assert cc.build_find_request(default).prior_probability == 0.0  # the ranker's default


def test_compare_takes_photos_or_a_person(tmp_path: Path) -> None:
    dad, c1, c2 = _touch(tmp_path / "dad.jpg"), _touch(tmp_path / "c1.jpg"), _touch(tmp_path / "c2.jpg")
    by_photos = cc.build_compare_request(
        build_parser().parse_args(
            ["compare", "--relative", f"father={dad}", "--candidate", f"{c1},{c2}", "--candidate-sex", "f"]
        )
    )
    assert by_photos.WhichOneof("candidate") == "candidate_photos"
    assert len(by_photos.candidate_photos.photos) == 2 and by_photos.candidate_photos.sex == common_pb2.SEX_FEMALE
    by_person = cc.build_compare_request(
        build_parser().parse_args(
            [
                "compare",
                "--relative",
                f"father={dad}",
                "--candidate-person",
                "p-9",
                "--born-from",
                "1990",
                "--prior",
                "0.2",
            ]
        )
    )
    assert by_person.WhichOneof("candidate") == "candidate_person_id" and by_person.candidate_person_id == "p-9"
    assert by_person.missing_person.birth_year.min == 1990 and by_person.prior_probability == 0.2
    with pytest.raises(SystemExit):  # one or the other, not both
        build_parser().parse_args(
            ["compare", "--relative", f"father={dad}", "--candidate", str(c1), "--candidate-person", "p-9"]
        )
    with pytest.raises(SystemExit):  # one of them is needed
        build_parser().parse_args(["compare", "--relative", f"father={dad}"])
    with pytest.raises(cc.CommandError, match="--candidate-sex"):
        cc.build_compare_request(
            build_parser().parse_args(
                ["compare", "--relative", f"father={dad}", "--candidate-person", "p", "--candidate-sex", "m"]
            )
        )


# --- what find, compare and status print -------------------------------------------------


def _scoring(calibrated: bool = True) -> ranker_pb2.ScoringInfo:
    if not calibrated:
        return ranker_pb2.ScoringInfo(calibrated=False, prior_probability=0.001, fusion_method="mean-max-cosine-v1: x")
    return ranker_pb2.ScoringInfo(
        calibrated=True,
        artifact_id="kin-7",
        calibration_id="cal-7",
        identity_model_id="ident",
        kinship_model_id="kin-model",
        prior_probability=0.001,
        strong_candidate_log10_lr=2.0,
        fusion_method="summed-calibrated-llr-v1: y",
    )


def test_find_soft_facts_from_flags(tmp_path: Path) -> None:
    a = _touch(tmp_path / "dad.jpg")
    parse = build_parser().parse_args
    base = ["find", "--relative", f"father={a}", "--born-from", "1990", "--born-to", "1996", "--region", "R1"]
    hard = cc.build_find_request(parse(base)).missing_person
    assert not hard.HasField("soft")  # the hard filters stay the default
    soft = cc.build_find_request(parse([*base, "--soft-birth-year", "--soft-region"])).missing_person.soft
    assert (soft.birth_year, soft.regions) == (True, True)
    assert (soft.birth_year_log10_lr_per_year, soft.region_log10_lr) == (0.0, 0.0)  # 0: the ranker's defaults
    stated = cc.build_find_request(
        parse([*base, "--soft-birth-year", "--birth-year-penalty", "-0.1", "--soft-region", "--region-penalty", "-2"])
    ).missing_person.soft
    assert (stated.birth_year_log10_lr_per_year, stated.region_log10_lr) == (-0.1, -2.0)
    year_only = cc.build_find_request(parse([*base, "--soft-birth-year"])).missing_person.soft
    assert (year_only.birth_year, year_only.regions) == (True, False)
    refused = [
        (["find", "--relative", f"father={a}", "--soft-birth-year"], "give the window too"),
        (["find", "--relative", f"father={a}", "--soft-region"], "give the regions too"),
        ([*base, "--birth-year-penalty", "-0.1"], "give --soft-birth-year too"),
        ([*base, "--soft-birth-year", "--birth-year-penalty", "0.5"], "below 0 and at least -10"),
        ([*base, "--soft-region", "--region-penalty", "-11"], "below 0 and at least -10"),
    ]
    for argv, message in refused:
        with pytest.raises(cc.CommandError, match=message):
            cc.build_find_request(parse(argv))


def test_find_shows_the_soft_facts_a_candidate_lies_outside_in_text_and_json() -> None:
    outside = _candidate("p1", 1, 0.4, False)
    outside.facts.add(
        fact="birth_year", detail="born 1980, 10 years outside 1990-1996", log10_likelihood_ratio=-2.5, years_outside=10
    )
    outside.facts.add(fact="region", detail="region XX, not R1", log10_likelihood_ratio=-1.0)
    reply = ranker_pb2.FindRelativesResponse(candidates=[outside], scoring=_scoring(), model_id="ident")
    text = "\n".join(cc.find_lines(reply))
    assert "soft birth year log10 LR -2.50 (born 1980, 10 years outside 1990-1996)" in text
    assert "soft region    log10 LR -1.00 (region XX, not R1)" in text
    shown = json.loads(cc.to_json(reply))["candidates"][0]["facts"]
    assert (
        shown[0]["fact"] == "birth_year"
        and shown[0]["years_outside"] == 10
        and shown[1]["log10_likelihood_ratio"] == -1
    )


def _candidate(person: str, rank: int, llr: float, strong: bool) -> ranker_pb2.Candidate:
    return ranker_pb2.Candidate(
        person_id=person,
        rank=rank,
        score=llr,
        log10_likelihood_ratio=llr,
        posterior_probability=0.09,
        strong_candidate=strong,
        attributes=common_pb2.PersonAttributes(birth_year=1992, sex=common_pb2.SEX_MALE),
        evidence=[
            ranker_pb2.RelativeEvidence(
                label="father",
                relation=common_pb2.RELATION_FATHER,
                similarity=0.41,
                log10_likelihood_ratio=1.7,
                fusion_weight=1.0,
                calibration="father-son",
                record_id=f"{person}:1",
                retrieved=True,
            ),
            ranker_pb2.RelativeEvidence(
                label="anna",
                relation=common_pb2.RELATION_SISTER,
                similarity=0.2,
                log10_likelihood_ratio=0.9,
                fusion_weight=0.5,
                calibration="sibling",
                record_id=f"{person}:1",
            ),
        ],
    )


def test_find_prints_evidence_in_numbers_and_words_and_marks_strong_candidates() -> None:
    reply = ranker_pb2.FindRelativesResponse(
        candidates=[_candidate("p1", 1, 2.15, True), _candidate("p2", 2, 0.4, False)],
        scoring=_scoring(),
        strong_candidates=1,
        candidates_considered=7,
        model_id="ident",
        fusion_method="summed-calibrated-llr-v1: y",
    )
    text = "\n".join(cc.find_lines(reply))
    assert "artifact kin-7, calibration cal-7" in text
    (p1,) = [line for line in text.splitlines() if " p1 " in line]
    assert "log10 LR +2.15 (moderately strong support)" in p1 and "posterior 0.09" in p1 and "STRONG" in p1
    (p2,) = [line for line in text.splitlines() if " p2 " in line]
    assert "weak support" in p2 and "STRONG" not in p2
    assert "father         log10 LR +1.70 (father-son;" in text
    assert "anna           log10 LR +0.90 (sibling, weight 0.5;" in text
    assert "1 strong candidate(s)." in text
    assert text.splitlines()[-1] == cc.LEAD_NOTICE


def test_find_says_plainly_when_no_candidate_is_strong_or_scores_are_uncalibrated() -> None:
    weak = ranker_pb2.FindRelativesResponse(candidates=[_candidate("p2", 1, 0.4, False)], scoring=_scoring())
    text = "\n".join(cc.find_lines(weak))
    assert "No strong candidate: no one reaches log10 LR 2" in text and cc.LEAD_NOTICE in text
    plain = ranker_pb2.FindRelativesResponse(
        candidates=[ranker_pb2.Candidate(person_id="p3", rank=1, score=0.52)], scoring=_scoring(False)
    )
    text = "\n".join(cc.find_lines(plain))
    assert "UNCALIBRATED" in text and "score +0.520" in text
    assert "log10 LR" not in text and "No strong candidate" not in text and cc.LEAD_NOTICE in text


def test_compare_prints_the_one_candidate() -> None:
    reply = ranker_pb2.CompareKinshipResponse(candidate=_candidate("", 1, -0.6, False), scoring=_scoring())
    text = "\n".join(cc.compare_lines(reply))
    assert "(the candidate photos)" in text and "supports not kin" in text
    assert "Not a strong candidate" in text and text.splitlines()[-1] == cc.LEAD_NOTICE


def test_status_prints_how_the_ranker_scores() -> None:
    described = ranker_pb2.DescribeScoringResponse(
        scoring=_scoring(),
        calibrations=[
            ranker_pb2.RelationCalibration(
                name="father-son",
                fitted_on="KinFaceW-I folds 1-5",
                kin_pairs=156,
                non_kin_pairs=156,
                max_abs_log10_lr=2.5,
            )
        ],
        artifact_metrics={"auc": 0.83},
        artifact_licence="Research use only (FIW terms)",
        artifact_training_data="fiw-train, 556 families",
        artifact_shipped=True,
    )
    lines = cc.scoring_status_lines({"status": "SERVING", "scoring": json.loads(cc.to_json(described))})
    assert "calibrated: artifact kin-7, calibration cal-7" in lines[0]
    assert "father-son" in lines[1] and "156 kin" in lines[1] and "KinFaceW-I" in lines[1]
    assert lines[2].strip() == "artifact  kin-7 (shipped with kinship-search)"
    assert lines[3].strip() == "trained on fiw-train, 556 families"
    assert lines[4].strip() == "licence   Research use only (FIW terms)"
    assert lines[5].strip() == "held-out metrics: auc 0.83"
    bare = ranker_pb2.DescribeScoringResponse(scoring=_scoring(False))
    (line,) = cc.scoring_status_lines({"scoring": json.loads(cc.to_json(bare))})
    assert "UNCALIBRATED" in line
    assert cc.scoring_status_lines({"scoring_error": "UNIMPLEMENTED: x"}) == ["scoring   unknown (UNIMPLEMENTED: x)"]


# --- enroll: which models, what it prints ----------------------------------------------
# The pipeline itself (EmbedBatch, BulkEnrol, duplicates, resuming) runs against the real
# services in tests/integration/test_client_sdk.py and tests/integration/test_ranker_stack.py.


def _models(kinship: str = "") -> list[embedder_pb2.ModelInfo]:
    models = [embedder_pb2.ModelInfo(model_id="ident", is_default=True, kind=embedder_pb2.MODEL_KIND_IDENTITY)]
    if kinship:
        models.append(
            embedder_pb2.ModelInfo(
                model_id=kinship, kind=embedder_pb2.MODEL_KIND_KINSHIP, bound_model_id="ident", artifact_id="a"
            )
        )
    return models


def test_enroll_pairs_the_identity_model_with_its_kinship_model() -> None:
    assert cc.kinship_model_for(_models("kin@ident"), "") == ("ident", "kin@ident")
    assert cc.kinship_model_for(_models(), "ident") == ("ident", "")


def test_enroll_refuses_a_kinship_model_or_an_unknown_one_as_its_model() -> None:
    with pytest.raises(cc.CommandError, match="is a kinship model"):
        cc.kinship_model_for(_models("kin@ident"), "kin@ident")
    with pytest.raises(cc.CommandError, match="does not serve model 'nope'"):
        cc.kinship_model_for(_models(), "nope")


def test_enroll_summary_names_duplicates_resumed_and_refused_files() -> None:
    report = EnrolReport(
        model_id="ident",
        collection="c_ident",
        enrolled=[{"path": "a.jpg", "person_id": "a", "record_id": "a:1"}],
        already_enrolled=[{"path": "b.jpg", "person_id": "b", "record_id": "b:2"}],
        duplicates=[{"path": "a2.jpg", "person_id": "a", "same_as": "a.jpg", "same_as_person_id": "a"}],
        refused=[{"path": "c.jpg", "reason": "no face found"}],
        journal="/j/x.jsonl",
        seconds=2.0,
    )
    text = "\n".join(cc.enroll_lines(report, 4))
    assert text.startswith("enrolled 1 of 4 image(s) into c_ident (model ident)")
    assert "1 image(s) already enrolled by an interrupted run (journal /j/x.jsonl)" in text
    assert "duplicate a2.jpg: the same bytes as a.jpg (person a); enrolled once" in text
    assert "skipped c.jpg: no face found" in text
    assert report.to_dict()["skipped"] == report.refused  # the --json key of earlier versions
