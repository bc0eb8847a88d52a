"""kinship.client against the real suite: embedder (model pack, a test kinship artifact), indexer
(Milvus Lite in tmp_path) and calibrated ranker, each its own gRPC server on an ephemeral port.

Every test runs twice, with the blocking `KinshipClient` and with `AsyncKinshipClient` (driven
from a loop of its own), so the two clients answer the same. Photos are the sample gallery's
(faces cut from insightface's t1.jpg, its Tom Hanks portrait, scikit-image's astronaut),
made at run time from installed packages.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from kinship.cli.sample import build_sample_images
from kinship.client import (
    AsyncKinshipClient,
    Facts,
    InvalidArgument,
    KinshipClient,
    NotFound,
    Relative,
)
from kinship.embedder import bootstrap as embedder_bootstrap
from kinship.indexer import bootstrap as indexer_bootstrap
from kinship.ranker import bootstrap as ranker_bootstrap
from kinship.runtime import config
from kinship.runtime.server import ServerThread
from tests.kinship_artifact import make_test_artifact

KINDS = ("sync", "async")


def resolved(settings, **flags) -> SimpleNamespace:
    return config.resolve(settings, {"port": "0", **flags}, env={})


class AsyncOnItsLoop:
    """An AsyncKinshipClient on an event loop thread, its coroutine methods called as plain ones."""

    def __init__(self, **kwargs):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> AsyncKinshipClient:
            return AsyncKinshipClient(**kwargs)

        self.client = self._run(make())

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(300)

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self._run(attribute(*args, **kwargs))
        return attribute

    def close(self) -> None:
        self._run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("client-suite")
    artifacts = data_dir / "artifacts"
    artifact = make_test_artifact(artifacts, dimension=32)
    with (
        ServerThread(
            embedder_bootstrap.build, resolved(embedder_bootstrap.settings(), artifacts_dir=str(artifacts))
        ) as embedder,
        ServerThread(
            indexer_bootstrap.build, resolved(indexer_bootstrap.settings(), data_dir=str(data_dir))
        ) as indexer,
    ):
        addresses = dict(embedder_address=embedder.address, indexer_address=indexer.address)
        with ServerThread(
            ranker_bootstrap.build,
            # The family query's coverage check read on every call (the partial-gallery test changes it).
            resolved(ranker_bootstrap.settings(), artifacts_dir=str(artifacts), family_check_seconds="0", **addresses),
        ) as ranker:
            items, examples = build_sample_images(data_dir / "sample", embedder.address)
            yield SimpleNamespace(
                target={"embedder": embedder.address, "indexer": indexer.address, "ranker": ranker.address},
                artifact=artifact,
                gallery=examples["gallery"],
                query=examples["self"],
                data_dir=data_dir,
            )


@pytest.fixture(params=KINDS)
def client(request, suite):
    made = KinshipClient(suite.target) if request.param == "sync" else AsyncOnItsLoop(target=suite.target)
    made.kind = request.param
    yield made
    made.close()


def photo_folder(suite, folder: Path, prefix: str, names: list[str]) -> Path:
    """Copies of sample gallery photos named <prefix>-<name>: one person per file."""
    folder.mkdir(parents=True)
    for name in names:
        source = next(suite.gallery.glob(f"{name}.*"))
        shutil.copy(source, folder / f"{prefix}-{name}{source.suffix}")
    return folder


def test_embed_and_status(client, suite):
    result = client.embed(suite.query, additional_model_ids=[suite.artifact.kinship_model_id])
    assert len(result.faces) == 1 and result.model_id == suite.artifact.identity_model_id
    face = result.subject()
    assert len(face.embedding) == result.dimension == 128
    assert len(face.additional[suite.artifact.kinship_model_id]) == 32
    assert result.proto.faces[0].detection_score == pytest.approx(face.detection_score)
    status = client.status()
    assert status.serving, status.services
    assert status.scoring is not None and status.scoring.scoring.calibrated


def test_a_folder_holding_the_same_photo_twice_enrols_it_once_and_reports_it(client, suite, tmp_path):
    folder = photo_folder(suite, tmp_path / "photos", client.kind, ["tom-hanks", "eileen-collins", "group-person-1"])
    # The same file again, in the person's own sub-folder (read after the loose files).
    twin = folder / f"{client.kind}-tom-hanks" / "downloaded-again.png"
    twin.parent.mkdir()
    shutil.copy(folder / f"{client.kind}-tom-hanks.png", twin)
    seen = []
    report = client.enroll(folder, facts=Facts(source="sdk-test"), progress=seen.append, batch_size=2)
    assert report.refused == []
    assert sorted(e["person_id"] for e in report.enrolled) == sorted(
        f"{client.kind}-{n}" for n in ("tom-hanks", "eileen-collins", "group-person-1")
    )
    (duplicate,) = report.duplicates
    assert duplicate["path"] == str(twin) and duplicate["same_as"] == str(folder / f"{client.kind}-tom-hanks.png")
    assert (report.model_id, report.kinship_model_id) == (
        suite.artifact.identity_model_id,
        suite.artifact.kinship_model_id,
    )
    assert report.collection and report.kinship_collection
    assert seen[-1].done == 4 and seen[-1].total == 4 and seen[-1].duplicates == 1
    for model, dimension in ((report.model_id, 128), (report.kinship_model_id, 32)):
        (record,) = client.records(f"{client.kind}-tom-hanks", model_id=model)
        assert len(record.embedding) == dimension and record.facts.source == "sdk-test"
        assert record.record_id == next(e["record_id"] for e in report.enrolled if e["person_id"] == record.person_id)


class Stop(Exception):
    """Ends an enrolment part way, as Ctrl-C or a crash would."""


def test_a_rerun_after_an_interruption_enrols_nothing_twice(client, suite, tmp_path):
    names = ["group-person-1", "group-person-2", "group-person-3", "group-person-4", "group-person-5", "tom-hanks"]
    folder = photo_folder(suite, tmp_path / "photos", f"{client.kind}-resume", names)
    journal = tmp_path / "journal"

    def stop_after_two(progress):
        if progress.enrolled >= 2:
            raise Stop

    with pytest.raises(Stop):
        client.enroll(folder, journal=journal, progress=stop_after_two, batch_size=1, in_flight=1)
    (left,) = journal.glob("*.jsonl")  # kept: the run did not finish
    first = [line for line in left.read_text().splitlines() if line]
    assert len(first) >= 2

    again = client.enroll(folder, journal=journal, batch_size=2)
    assert again.refused == [] and again.duplicates == []
    assert len(again.already_enrolled) == len(first)
    assert len(again.enrolled) + len(again.already_enrolled) == len(names)
    assert not {e["record_id"] for e in again.enrolled} & {e["record_id"] for e in again.already_enrolled}
    assert list(journal.glob("*.jsonl")) == []  # a finished run leaves no journal
    people = [f"{client.kind}-resume-{n}" for n in names]
    for model in (again.model_id, again.kinship_model_id):
        records = client.records(people, model_id=model)
        assert sorted(r.person_id for r in records) == sorted(people), "one record per photo, none twice"


def test_find_compare_records_and_delete(client, suite, tmp_path):
    folder = photo_folder(suite, tmp_path / "photos", f"{client.kind}-find", ["tom-hanks", "eileen-collins"])
    client.enroll(folder, facts=Facts(birth_year=1956, region="US"))
    planted = f"{client.kind}-find-tom-hanks"
    found = client.find_relatives([Relative("self", [suite.query])], birth_year=(1950, 1960), top_n=5)
    assert found.candidates[0].person_id == planted
    first = found.candidates[0]
    assert first.rank == 1 and first.facts.birth_year == 1956 and first.evidence[0].relation == "self"
    assert found.scoring.calibrated and first.log10_lr == pytest.approx(first.proto.log10_likelihood_ratio)
    compared = client.compare([Relative("self", [suite.query])], candidate_person_id=planted)
    assert compared.candidate.log10_lr == pytest.approx(first.log10_lr, abs=1e-6)
    by_photo = client.compare([Relative("self", [suite.query])], candidate_photos=[suite.query], candidate_sex="m")
    assert by_photo.candidate.evidence[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert client.delete(person_ids=[planted]) >= 2  # its identity and kinship records
    assert client.records(planted) == []


def test_failures_are_typed_with_the_services_details(client, suite):
    with pytest.raises(InvalidArgument) as caught:
        client.find_relatives([Relative("self", [b"not an image"])])
    assert caught.value.violations, "the ranker names the field at fault"
    assert any("relatives[0].photos[0]" in v.field for v in caught.value.violations)
    assert caught.value.request_id and caught.value.code().name == "INVALID_ARGUMENT"
    with pytest.raises(NotFound):
        client.records("anyone", model_id="no-such-model")
    with pytest.raises(ValueError, match="relation must be one of"):
        client.find_relatives([Relative("uncle", [suite.query])])


def test_the_cli_enrols_and_finds_through_the_client(suite, tmp_path, capsys, monkeypatch):
    from kinship.cli.main import main

    for name, address in suite.target.items():
        monkeypatch.setenv(f"KINSHIP_{name.upper()}_ADDRESS", address)
    folder = photo_folder(suite, tmp_path / "photos", "cli", ["tom-hanks", "group-person-2"])
    shutil.copy(folder / "cli-tom-hanks.png", folder / "cli-tom-hanks-again.png")
    (folder / "cli-broken.jpg").write_bytes(b"not a photo")
    journal = tmp_path / "journal"
    argv = ["enroll", str(folder), "--birth-year", "1956", "--journal", str(journal), "--json"]
    assert main(argv) == 1  # one file refused: exit 1, the rest enrolled
    report = json.loads(capsys.readouterr().out)
    enrolled = {e["path"] for e in report["enrolled"]}
    assert len(enrolled) == 2 and str(folder / "cli-group-person-2.jpg") in enrolled
    ((duplicate),) = report["duplicates"]  # whichever of the two copies came second
    copies = {str(folder / "cli-tom-hanks.png"), str(folder / "cli-tom-hanks-again.png")}
    assert {duplicate["path"], duplicate["same_as"]} == copies and duplicate["same_as"] in enrolled
    ((refused),) = report["skipped"]
    assert refused["path"] == str(folder / "cli-broken.jpg") and "INVALID_ARGUMENT" in refused["reason"]
    assert report["kinship_model_id"] == suite.artifact.kinship_model_id and report["collection"]
    assert (
        main(["find", "--relative", f"self={suite.query}", "--born-from", "1950", "--born-to", "1960", "--json"]) == 0
    )
    found = json.loads(capsys.readouterr().out)
    assert found["candidates"][0]["person_id"].startswith("cli-tom-hanks")
    # A window that misses his registered 1956, made soft: he stays, 34 years outside, with the penalty stated.
    soft = [
        "find",
        "--relative",
        f"self={suite.query}",
        "--born-from",
        "1990",
        "--born-to",
        "1995",
        "--soft-birth-year",
    ]
    assert main([*soft, "--birth-year-penalty", "-0.05", "--json"]) == 0
    kept = next(
        c for c in json.loads(capsys.readouterr().out)["candidates"] if c["person_id"].startswith("cli-tom-hanks")
    )
    ((fact),) = kept["facts"]
    assert fact["fact"] == "birth_year" and fact["years_outside"] == 34
    assert fact["log10_likelihood_ratio"] == pytest.approx(34 * -0.05)
    assert main([*soft, "--birth-year-penalty", "-0.05", "--top-n", "50"]) == 0
    assert "soft birth year log10 LR -1.70 (" in capsys.readouterr().out
    assert main(["find", "--relative", f"self={tmp_path / 'missing.jpg'}"]) == 1
    assert "cannot read" in capsys.readouterr().err


def tenant_counts(suite, tenant: str) -> dict[str, int]:
    """Records of `tenant` per model, from the indexer's Stats (what the ranker's coverage check reads)."""
    from kinship.runtime.clients import sync_channel
    from kinship.v1 import indexer_pb2, indexer_pb2_grpc

    with sync_channel(suite.target["indexer"]) as channel:
        reply = indexer_pb2_grpc.IndexerStub(channel).Stats(indexer_pb2.StatsRequest(tenant=tenant), timeout=30)
    return {c.collection.model_id: c.tenant_record_count for c in reply.collections}


def test_sdk_enrolment_writes_the_family_querys_combined_vectors_and_delete_erases_them(client, suite, tmp_path):
    """The gallery an SDK user enrols is the one the family query searches: every face has its
    combined [kinship; identity] vector (`combined_vectors` of its two stored vectors) under its
    record id, the tenant's combined collection covers the identity one (so the ranker runs the
    family query), the answer is the planted person, and erasure removes the combined rows too.
    A gallery whose combined collection misses a face is searched per photo: the face is found."""
    import numpy as np

    from kinship.family_vectors import combined_vectors, family_model_id

    tenant = f"family-{client.kind}"
    owned = (
        KinshipClient(suite.target, tenant=tenant)
        if client.kind == "sync"
        else AsyncOnItsLoop(target=suite.target, tenant=tenant)
    )
    try:
        names = ["tom-hanks", "eileen-collins", "group-person-1"]
        folder = photo_folder(suite, tmp_path / "photos", f"{client.kind}-fam", names)
        report = owned.enroll(folder, facts=Facts(birth_year=1956, region="US"))
        family = family_model_id(suite.artifact.kinship_model_id)
        assert report.refused == [] and report.to_dict()["family_model_id"] == family and report.family_collection
        identity_model, kinship_model = report.model_id, report.kinship_model_id
        counts = tenant_counts(suite, tenant)
        assert counts[identity_model] == counts[kinship_model] == counts[family] == len(names)
        people = [f"{client.kind}-fam-{n}" for n in names]
        by_model = {
            m: {r.record_id: r for r in owned.records(people, model_id=m)}
            for m in (identity_model, kinship_model, family)
        }
        assert set(by_model[family]) == set(by_model[identity_model]) == {e["record_id"] for e in report.enrolled}
        for record_id, record in by_model[family].items():
            expected = combined_vectors(
                np.asarray(by_model[kinship_model][record_id].embedding),
                np.asarray(by_model[identity_model][record_id].embedding),
            )[0]
            assert np.allclose(record.embedding, expected, atol=1e-6)
            assert record.person_id == by_model[identity_model][record_id].person_id
            assert record.facts.birth_year == 1956 and record.facts.region == "US"

        planted = f"{client.kind}-fam-tom-hanks"
        found = owned.find_relatives([Relative("self", [suite.query])], birth_year=(1950, 1960), top_n=5)
        assert found.candidates[0].person_id == planted
        compared = owned.compare([Relative("self", [suite.query])], candidate_person_id=planted)
        assert compared.candidate.log10_lr == pytest.approx(found.candidates[0].log10_lr, abs=1e-6)

        # Erasure by person: identity, kinship and combined rows alike.
        gone = f"{client.kind}-fam-eileen-collins"
        assert owned.delete(person_ids=[gone]) == 3
        assert owned.records(gone, model_id=family) == [] and owned.records(gone) == []
        counts = tenant_counts(suite, tenant)
        assert counts[identity_model] == counts[kinship_model] == counts[family] == len(names) - 1

        # The planted face loses its combined vector only (as if enrolled by an older client): the
        # family query could never find it, so the ranker must search per photo and still find it.
        assert owned.delete(person_ids=[planted], model_id=family) == 1
        assert tenant_counts(suite, tenant)[family] == len(names) - 2
        again = owned.find_relatives([Relative("self", [suite.query])], birth_year=(1950, 1960), top_n=5)
        assert again.candidates[0].person_id == planted
        assert again.candidates[0].log10_lr == pytest.approx(found.candidates[0].log10_lr, abs=1e-6)
    finally:
        owned.close()
