"""The `make run` path: `kinship serve all --sample-gallery` enrols once and answers the printed examples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_ports

READY_LINE = "kinship: press Ctrl-C to stop"


def start_suite(data_dir: Path, ports: dict[str, int], log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "all", "--sample-gallery", "--data-dir", str(data_dir)]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    log = open(log_path, "w")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 240
    while READY_LINE not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"serve all --sample-gallery did not get ready; log:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.3)
    return process


def find_top(query: Path, env: dict[str, str]) -> dict:
    found = subprocess.run(
        [sys.executable, "-m", "kinship.cli.main", "find", "--relative", f"self={query}", "--top-n", "3", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    return json.loads(found.stdout)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "kinship.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def check_shipped_artifact_answers(data_dir: Path, env: dict[str, str]) -> None:
    """A fresh data directory serves the shipped artifact: calibrated, named, licensed, and LRs per relative."""
    from kinship.artifacts import load_shipped

    shipped = load_shipped()
    status = run_cli(env, "status").stdout
    assert "calibrated: artifact " + shipped.artifact_id in status and "UNCALIBRATED" not in status
    assert "shipped with kinship-search" in status and "trained on fiw-train" in status
    assert "licence   Research use only" in status
    gallery = data_dir / "sample" / "gallery"
    grandmother, father = gallery / "group-person-1.jpg", gallery / "group-person-2.jpg"
    found = json.loads(
        run_cli(
            env, "find", "--relative", f"grandmother={grandmother}", "--relative", f"father={father}", "--json"
        ).stdout
    )
    assert found["scoring"]["calibrated"] and found["scoring"]["artifact_id"] == shipped.artifact_id
    assert found["candidates"]
    for candidate in found["candidates"]:
        relations = sorted(e["relation"] for e in candidate["evidence"])
        assert relations == ["RELATION_FATHER", "RELATION_GRANDMOTHER"]
        for evidence in candidate["evidence"]:
            assert abs(float(evidence.get("log10_likelihood_ratio", 0.0))) < 10
    text = run_cli(env, "find", "--relative", f"grandmother={grandmother}", "--relative", f"father={father}").stdout
    assert "grandmother" in text and "father" in text and "log10 LR" in text


def stop_suite(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    return process.wait(60)


def test_sample_gallery_is_enrolled_once_and_the_example_query_finds_its_person(tmp_path: Path) -> None:
    ports = dict(zip(("embedder", "indexer", "ranker"), free_ports(3), strict=True))
    env = dict(os.environ, **{f"KINSHIP_{n.upper()}_ADDRESS": f"127.0.0.1:{p}" for n, p in ports.items()})
    data_dir = tmp_path / "data"

    first_log = tmp_path / "first.log"
    process = start_suite(data_dir, ports, first_log)
    try:
        text = first_log.read_text()
        assert "sample gallery enrolled: 8 people" in text
        query = data_dir / "sample" / "queries" / "tom-hanks-mirrored.jpg"
        assert f"kinship find --relative self={query}" in text, "the printed example must point at a real file"
        reply = find_top(query, env)
        assert reply["candidates"][0]["person_id"] == "tom-hanks"
        assert reply["candidates"][0]["attributes"]["birth_year"] == 1956
        check_shipped_artifact_answers(data_dir, env)
    finally:
        assert stop_suite(process) == 0

    second_log = tmp_path / "second.log"
    process = start_suite(data_dir, ports, second_log)
    try:
        assert "enrolling the sample gallery" not in second_log.read_text(), "enrolment must happen only the first time"
        assert "kinship find --relative self=" in second_log.read_text()
        # What was acknowledged before the restart is still there (the Milvus Lite file persisted it).
        again = find_top(query, env)
        assert [c["person_id"] for c in again["candidates"]] == [c["person_id"] for c in reply["candidates"]]
        assert again["candidates_considered"] == reply["candidates_considered"] == 8
    finally:
        assert stop_suite(process) == 0
    # The reopened file's collection came back released; the first purge loads it rather than failing.
    assert "retention purge failed" not in second_log.read_text()
