"""The v2 training path, shortened for CI: `kinship train` on FIW families, then `kinship eval --artifact`.

40 families (about 1,000 crops: a minute of feature maps on 2 cores), 3 epochs: enough to
check that what is written is a complete, loadable, calibrated head artifact and that a
fixed artifact is measured on a pairs.csv folder without fitting anything there. The
full run (all 556 families) is what made the shipped artifact (docs/kinship.md).
FIW images are read in place: the pairs.csv folder links to them, never copies them.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_path

pytestmark = [pytest.mark.shared, pytest.mark.timeout(900)]


def kinship(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "kinship.cli.main", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def fiw_dir(shared_dir: Path) -> Path:
    return require_path(shared_dir / "data" / "fiw-train", "the FIW training families")


@pytest.fixture(scope="module")
def trained(fiw_dir: Path, tmp_path_factory) -> tuple[Path, dict]:
    data = tmp_path_factory.mktemp("fiw-data")
    args = ("train", "--dataset", str(fiw_dir), "--data-dir", str(data), "--max-families", "40", "--epochs", "3")
    summary = json.loads(kinship(*args, "--quiet", "--json").stdout)
    return data, summary


def test_kinship_train_on_fiw_writes_an_active_calibrated_head_artifact(trained) -> None:
    from kinship.artifacts import load_active

    data, summary = trained
    artifact = load_active(data / "artifacts")
    assert artifact is not None and not artifact.shipped and artifact.artifact_id == summary["artifact_id"]
    from kinship.kinship_head import BLOCK_BORROWED

    # The default head: SFace's last block re-run from conv_13, the identity layer borrowed from the graph.
    assert artifact.network_kind == "head"
    assert artifact.head_inputs == {"feature_map": "conv_13_relu", "identity": "fc1", **BLOCK_BORROWED}
    assert (artifact.path / "head.onnx").stat().st_size < 4_000_000
    assert artifact.training["head"] == "block"
    assert {"father", "mother", "sibling", "self"} <= set(artifact.calibration.relations)
    assert "research use only" in artifact.licence.lower() and artifact.dataset["kind"] == "fiw"
    assert set(artifact.dataset["split"]) == {"train", "validation", "test"}
    overall = summary["test"]["verification"]["overall"]
    assert 0.0 <= overall["auc"] <= 1.0 and overall["pairs"] > 0
    # The feature maps were cached: a second run reads them instead of running the trunk again.
    (cache,) = (data / "cache").iterdir()
    assert json.loads((cache / "state.json").read_text())["done"] == artifact.dataset["images"]


def test_eval_artifact_measures_a_pairs_csv_folder_without_fitting(trained, fiw_dir: Path, tmp_path: Path) -> None:
    from kinship.artifacts import load_active
    from kinship.training.fiw import load_fiw

    data, _ = trained
    artifact = load_active(data / "artifacts")
    fiw = load_fiw(fiw_dir)
    images_of = fiw.images_of()
    rows = []
    by_code: dict[str, list] = {}
    for pair in fiw.pairs:
        by_code.setdefault(pair.relation, []).append(pair)
    for code in ("fs", "md"):
        pairs = by_code[code][:30]
        for k, pair in enumerate(pairs):
            other = pairs[(k + 7) % len(pairs)]
            first = fiw.images[images_of[(pair.family, pair.elder)][0]]
            rows.append((code, 1, first, fiw.images[images_of[(pair.family, pair.younger)][0]]))
            if other.family != pair.family:
                rows.append((code, 0, first, fiw.images[images_of[(other.family, other.younger)][0]]))
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "images").symlink_to(fiw_dir / "images")  # read in place, never copied
    with (folder / "pairs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["relation", "kin", "image1", "image2", "fold"])
        writer.writerows([(*row, 1) for row in rows])
    manifest_before = (artifact.path / "manifest.json").read_bytes()
    result = json.loads(
        kinship(
            "eval", "--artifact", str(artifact.path), "--dataset", str(folder), "--aligned", "--quiet", "--json"
        ).stdout
    )
    assert set(result) >= {"verification", "calibration", "baseline", "per_relation"}
    assert set(result["per_relation"]) == {"fs", "md"}
    assert result["dataset"] == {
        "path": str(folder),
        "kind": "pairs.csv",
        "part": None,
        "images": result["dataset"]["images"],
        "pairs": len(rows),
        "aligned": True,
        "undetected": 0,
    }
    for code in ("fs", "md"):
        measured = result["per_relation"][code]
        assert 0.0 <= measured["auc"] <= 1.0 and 0.0 <= measured["baseline"]["auc"] <= 1.0
        assert measured["calibration"] in artifact.calibration.relations
    assert (artifact.path / "manifest.json").read_bytes() == manifest_before  # nothing fitted, nothing written
    bad = subprocess.run(
        [sys.executable, "-m", "kinship.cli.main", "eval", "--artifact", "kin-nowhere", "--dataset", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no artifact 'kin-nowhere'" in bad.stderr
