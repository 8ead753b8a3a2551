"""The trainer config: defaults that work, shipped examples that validate, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_server.config import Config, ConfigError, load_config, parse_config, with_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_grpo_literature() -> None:
    cfg = Config()
    assert cfg.algorithm.epsilon_low == 0.2 and cfg.algorithm.epsilon_high == 0.2
    assert cfg.algorithm.beta == 0.04
    assert cfg.training.learning_rate == 1e-6
    assert cfg.algorithm.inner_iterations == 1


@pytest.mark.parametrize("name", ["tiny.yaml", "demo.yaml"])
def test_shipped_examples_validate(name: str) -> None:
    cfg = load_config(ROOT / "examples" / name)
    assert cfg.rewards.default[0].backend == "math"


def test_errors_name_every_bad_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"algorithm": {"group_size": 1, "aggregation": "mean"}, "training": {"learning_rate": -1}})
    text = str(err.value)
    assert "algorithm.group_size" in text
    assert "algorithm.aggregation" in text
    assert "training.learning_rate" in text


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ConfigError, match="algorithm.betta"):
        parse_config({"algorithm": {"betta": 0.1}})


def test_path_source_needs_a_path() -> None:
    with pytest.raises(ConfigError, match="model.path is required"):
        parse_config({"model": {"source": "path"}})


def test_bad_listen_address() -> None:
    with pytest.raises(ConfigError, match="server.listen"):
        parse_config({"server": {"listen": "localhost"}})


def test_overrides_are_validated_again() -> None:
    cfg = with_overrides(Config(), server={"listen": "0.0.0.0:6000"})
    assert cfg.server.listen == "0.0.0.0:6000"
    with pytest.raises(ConfigError):
        with_overrides(Config(), server={"listen": "nope"})


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)
