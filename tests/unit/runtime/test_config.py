from __future__ import annotations

import argparse

import pytest

from kinship.runtime import config
from kinship.runtime.errors import ConfigError

SETTINGS = config.server_settings("embedder", 50051) + [
    config.Setting(
        "embedder_address", "KINSHIP_EMBEDDER_ADDRESS", "127.0.0.1:50051", "embedder", check=config.address_check
    ),
]


def test_defaults_when_nothing_is_set() -> None:
    s = config.resolve(SETTINGS, {}, env={})
    assert s.port == 50051
    assert s.host == "127.0.0.1"
    assert s.max_message_mb > 10, "a 10 MiB image must fit by default"
    assert s.metrics_port == -1


def test_flag_beats_environment_beats_default() -> None:
    env = {"KINSHIP_EMBEDDER_PORT": "6000", "KINSHIP_LOG_LEVEL": "DEBUG"}
    s = config.resolve(SETTINGS, {"port": "7000"}, env=env)
    assert s.port == 7000
    assert s.log_level == "debug"


def test_every_bad_setting_is_named_with_flag_and_variable() -> None:
    env = {"KINSHIP_EMBEDDER_PORT": "99999", "KINSHIP_MAX_MESSAGE_MB": "lots", "KINSHIP_EMBEDDER_ADDRESS": "nocolon"}
    with pytest.raises(ConfigError) as caught:
        config.resolve(SETTINGS, {}, env=env)
    text = str(caught.value)
    assert "$KINSHIP_EMBEDDER_PORT" in text and "0-65535" in text
    assert "$KINSHIP_MAX_MESSAGE_MB='lots'" in text
    assert "host:port" in text


def test_choices_are_enforced() -> None:
    with pytest.raises(ConfigError, match="must be one of json, console"):
        config.resolve(SETTINGS, {}, env={"KINSHIP_LOG_FORMAT": "xml"})


def test_argparse_flags_feed_resolve() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, SETTINGS)
    ns = parser.parse_args(["--port", "0", "--grace-seconds", "2.5"])
    s = config.resolve(SETTINGS, ns, env={"KINSHIP_EMBEDDER_PORT": "1234"})
    assert s.port == 0
    assert s.grace_seconds == 2.5


def test_bool_parser() -> None:
    assert config.parse_bool("Yes") is True
    assert config.parse_bool("0") is False
    with pytest.raises(ValueError):
        config.parse_bool("maybe")
