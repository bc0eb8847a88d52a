"""Model pack integrity (sha256) and the embedder's settings."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from kinship.embedder import bootstrap
from kinship.embedder.adapters.model_pack import DEFAULT_PACK, ModelPackError, load_pack, read_verified
from kinship.runtime.config import default_data_dir, resolve
from kinship.runtime.errors import ConfigError


def test_read_verified_returns_the_bytes_when_the_hash_matches(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"weights")
    assert read_verified(path, hashlib.sha256(b"weights").hexdigest()) == b"weights"


def test_read_verified_refuses_a_different_file_naming_both_hashes(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"tampered weights")
    expected = hashlib.sha256(b"weights").hexdigest()
    with pytest.raises(ModelPackError) as caught:
        read_verified(path, expected)
    message = str(caught.value)
    assert expected in message and hashlib.sha256(b"tampered weights").hexdigest() in message
    assert "refused" in message


def test_read_verified_reports_a_missing_file(tmp_path):
    with pytest.raises(ModelPackError, match="cannot be read"):
        read_verified(tmp_path / "absent.onnx", "0" * 64)


def test_load_pack_refuses_the_real_recognizer_when_its_hash_is_not_the_expected_one():
    altered = replace(DEFAULT_PACK, recognizer=replace(DEFAULT_PACK.recognizer, sha256="0" * 64))
    with pytest.raises(ModelPackError, match=DEFAULT_PACK.recognizer.name):
        load_pack(altered)


def test_load_pack_says_which_package_to_install_when_it_is_missing():
    with pytest.raises(ModelPackError, match="not installed"):
        load_pack(replace(DEFAULT_PACK, package="no_such_model_package"))


def test_a_model_pack_error_is_a_startup_configuration_error():
    assert issubclass(ModelPackError, ConfigError)


def test_settings_defaults_and_overrides():
    values = resolve(bootstrap.settings(), {}, env={})
    cores = bootstrap.available_cores()
    assert (values.port, values.workers, values.intra_op_threads) == (50051, 4 * cores, 1)
    assert (values.batch_runners, values.recognizer_threads, values.inter_op_threads) == (1, 0, 1)
    assert (values.batch_max_size, values.batch_max_wait_ms, values.execution_provider) == (16, 2.0, "cpu")
    assert bootstrap.recognizer_threads(values) == cores
    assert (values.max_megapixels, values.detection_threshold, values.nms_iou) == (40.0, 0.6, 0.3)
    env = {"KINSHIP_EMBEDDER_WORKERS": "4", "KINSHIP_EMBEDDER_DETECTION_THRESHOLD": "0.75"}
    values = resolve(bootstrap.settings(), {"intra_op_threads": "2"}, env=env)
    assert (values.workers, values.intra_op_threads, values.detection_threshold) == (4, 2, 0.75)


def test_bad_settings_are_reported_together_naming_each_variable():
    env = {"KINSHIP_EMBEDDER_WORKERS": "0", "KINSHIP_EMBEDDER_DETECTION_THRESHOLD": "1.5"}
    with pytest.raises(ConfigError) as caught:
        resolve(bootstrap.settings(), {}, env=env)
    assert "KINSHIP_EMBEDDER_WORKERS" in str(caught.value)
    assert "KINSHIP_EMBEDDER_DETECTION_THRESHOLD" in str(caught.value)


def test_artifacts_dir_is_a_setting_of_the_embedder(tmp_path):
    assert resolve(bootstrap.settings(), {}, env={}).artifacts_dir == default_data_dir() / "artifacts"
    env = {"KINSHIP_ARTIFACTS_DIR": str(tmp_path / "from-env")}
    assert resolve(bootstrap.settings(), {}, env=env).artifacts_dir == tmp_path / "from-env"
    flags = {"artifacts_dir": str(tmp_path / "from-flag")}  # what `kinship serve all` passes
    assert resolve(bootstrap.settings(), flags, env=env).artifacts_dir == tmp_path / "from-flag"
