"""Reading a kinship data set laid out like KinFaceW, and the errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinship.cli.main import main
from kinship.runtime.errors import ConfigError
from kinship.training.dataset import RELATION_CODES, load_dataset


def _write(root: Path, rows: list[str], images: list[str]) -> Path:
    (root / "images" / "fs").mkdir(parents=True)
    for name in images:
        (root / "images" / name).write_bytes(b"not read here")
    (root / "pairs.csv").write_text("relation,fold,kin,image1,image2\n" + "\n".join(rows) + "\n")
    return root


def test_pairs_index_images_and_folds(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        ["fs,1,1,fs/a_1.jpg,fs/a_2.jpg", "fs,2,0,fs/b_1.jpg,fs/a_2.jpg"],
        ["fs/a_1.jpg", "fs/a_2.jpg", "fs/b_1.jpg"],
    )
    dataset = load_dataset(root)
    assert dataset.images == ("fs/a_1.jpg", "fs/a_2.jpg", "fs/b_1.jpg")
    assert dataset.folds == (1, 2)
    assert dataset.relations == ("fs",)
    first, second = dataset.pairs
    assert (first.kin, first.relative, first.person) == (True, 0, 1)
    assert (second.kin, second.fold) == (False, 2)
    assert len(dataset.digest()) == 64
    # The digest names the data: changing one image changes it.
    before = dataset.digest()
    (root / "images" / "fs" / "b_1.jpg").write_bytes(b"another photo")
    assert dataset.digest() != before


def test_missing_table_image_and_unknown_relation_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no pairs.csv"):
        load_dataset(tmp_path)
    root = _write(tmp_path / "a", ["fs,1,1,fs/a_1.jpg,fs/gone.jpg"], ["fs/a_1.jpg"])
    with pytest.raises(ConfigError, match="missing under"):
        load_dataset(root)
    root = _write(tmp_path / "b", ["xx,1,1,fs/a_1.jpg,fs/a_1.jpg"], ["fs/a_1.jpg"])
    with pytest.raises(ConfigError, match="relation 'xx'"):
        load_dataset(root)


def test_relation_codes_name_the_calibrations_the_ranker_looks_up() -> None:
    assert RELATION_CODES["fd"].calibration == "father-daughter"
    assert RELATION_CODES["ms"].calibration == "mother-son"
    assert {RELATION_CODES[c].relative for c in ("fs", "fd", "ms", "md")} == {"father", "mother"}


def test_cli_eval_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    code = main(["eval", "--dataset", str(tmp_path), "--quiet"])
    assert code == 2
    assert "no pairs.csv" in capsys.readouterr().err
