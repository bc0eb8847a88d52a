"""The pieces of issue 31's items 4 and 7 below the subprocess tests (tests/e2e/test_cli_errors.py): field
paths to flags, relation suggestions, the serve-all relay's lines and the Milvus Lite log filter."""

from __future__ import annotations

import json
import logging

import pytest

from kinship.cli import errors, service_logs
from kinship.cli.main import build_parser
from kinship.client.types import RELATIONS
from kinship.runtime import logs


def _find(*flags: str):
    return build_parser().parse_args(["find", *flags])


@pytest.mark.parametrize(
    ("field", "flags", "flag"),
    [
        ("missing_person.birth_year.min", ("--born-from", "1800"), "--born-from"),
        ("missing_person.birth_year.max", ("--born-to", "1800"), "--born-to"),
        ("missing_person.birth_year", ("--born-from", "1990", "--born-to", "1980"), "--born-from/--born-to"),
        ("missing_person.birth_year.min", ("--birth-year", "1800"), "--birth-year"),
        ("missing_person.regions[1]", ("--region", "north", "--region", " "), "--region ' '"),
        ("missing_person.soft.birth_year_log10_lr_per_year", (), "--birth-year-penalty"),
        ("prior_probability", (), "--prior"),
        ("top_n", (), "--top-n"),
        ("relatives", (), "--relative"),
        ("relatives[1].label", (), "--relative mother=m.jpg (:LABEL)"),
        ("relatives[0].photos[1].image", (), "--relative father=a.jpg,b.jpg (photo b.jpg)"),
        ("relatives[0].photos[0].capture_year", (), "--relative father=a.jpg,b.jpg (@WHEN of photo a.jpg)"),
        ("relatives[5].photos[0].image", (), "--relative (number 6) (photo 1)"),
        ("something.new", (), ""),
    ],
)
def test_field_paths_map_to_the_flags_that_set_them(field: str, flags: tuple[str, ...], flag: str) -> None:
    args = _find("--relative", "father=a.jpg,b.jpg", "--relative", "mother=m.jpg", *flags)
    assert errors.flag_for(field, args) == flag


def test_compare_and_embed_fields() -> None:
    args = build_parser().parse_args(["compare", "--relative", "father=a.jpg", "--candidate", "c1.jpg,c2.jpg"])
    assert errors.flag_for("candidate_photos.photos[1].image", args) == "--candidate (photo c2.jpg)"
    assert errors.flag_for("candidate_person_id", args) == "--candidate-person"
    assert errors.flag_for("max_faces", build_parser().parse_args(["embed", "x.jpg"])) == "--max-faces"


def test_relation_suggestions() -> None:
    known = list(RELATIONS)
    assert errors.suggest_relation("fathr", known) == "; did you mean father?"
    assert errors.suggest_relation("Dad", known) == "; did you mean father?"
    assert errors.suggest_relation("grandma", known) == "; did you mean grandmother?"
    assert errors.suggest_relation("granpa", known) == "; did you mean grandfather?"
    assert "not a relation the suite scores" in errors.suggest_relation("son", known)
    assert errors.suggest_relation("xyzzy", known) == ""


def test_the_relay_shows_warnings_and_errors_one_line_each() -> None:
    info = json.dumps({"event": "call", "level": "info", "service": "ranker"})
    warning = json.dumps({"event": "rpc refused", "level": "warning", "code": "INVALID_ARGUMENT", "service": "ranker"})
    error = json.dumps({"event": "boom", "level": "error", "exception": "Traceback ...\nValueError: bad"})
    assert service_logs.readable("ranker", info) is None
    assert service_logs.readable("ranker", warning) == "kinship: ranker warning: rpc refused (code=INVALID_ARGUMENT)"
    assert service_logs.readable("indexer", error) == "kinship: indexer error: boom [ValueError: bad]"
    assert service_logs.readable("ranker", warning, warnings=False) is None
    console = "2026-12-08 03:25:51 [warning  ] slow call      rpc=/x"
    assert service_logs.readable("embedder", console) == f"kinship: embedder warning: {console}"
    assert service_logs.readable("embedder", "not a log line {") is None


def test_the_relay_holds_start_up_warnings_and_shows_each_once(tmp_path, capsys) -> None:
    relay = service_logs.Relay(interval=60)  # passes only when asked, for the test
    plaintext = json.dumps({"event": "serving PLAINTEXT", "level": "warning", "host": "127.0.0.1"})
    not_ready = json.dumps({"event": "service not ready", "level": "warning"})
    for name in ("embedder", "indexer", "ranker"):
        (tmp_path / f"{name}.log").write_text("")
        relay.follow(name, tmp_path / f"{name}.log")
    for name in ("embedder", "indexer", "ranker"):
        with open(tmp_path / f"{name}.log", "a") as f:
            f.write(plaintext + "\n" + (not_ready + "\n" if name == "ranker" else ""))
    relay._pass()
    assert capsys.readouterr().err == ""
    relay.ready()
    assert capsys.readouterr().err == "kinship: embedder, indexer, ranker warning: serving PLAINTEXT (host=127.0.0.1)\n"
    with open(tmp_path / "indexer.log", "a") as f:
        f.write(json.dumps({"event": "purge failed", "level": "warning"}) + "\n" + '{"event": "half')
    relay.stop()
    assert capsys.readouterr().err == "kinship: indexer warning: purge failed\n"  # a line still being written waits


def test_only_milvus_lites_unimplemented_alloc_timestamp_is_dropped() -> None:
    from pymilvus.grpc_gen import milvus_pb2_grpc

    class Context:  # what grpc hands a servicer: the generated base class sets the code, then raises
        def set_code(self, code):
            pass

        def set_details(self, details):
            pass

        def abort(self, *args):
            pass

    keep = logs._MilvusLiteAllocTimestamp()

    def record_of(call) -> logging.LogRecord:
        try:
            call()
        except NotImplementedError:
            import sys

            return logging.LogRecord(
                "grpc._server", logging.ERROR, __file__, 1, "Exception calling application", (), sys.exc_info()
            )
        raise AssertionError("expected NotImplementedError")

    servicer = milvus_pb2_grpc.MilvusServiceServicer()
    assert not keep.filter(record_of(lambda: servicer.AllocTimestamp(None, Context())))
    assert keep.filter(record_of(lambda: servicer.Dummy(None, Context())))  # another unimplemented method: kept

    def ours():
        raise NotImplementedError("Method not implemented!")

    assert keep.filter(record_of(ours))
    plain = logging.LogRecord("grpc._server", logging.ERROR, __file__, 1, "x", (), None)
    assert keep.filter(plain)
    logs.configure_logging("warning", "console")
    assert any(isinstance(f, logs._MilvusLiteAllocTimestamp) for f in logging.getLogger("grpc._server").filters)
