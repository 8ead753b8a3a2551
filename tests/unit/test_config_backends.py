"""Reward backends in the trainer's config are held to the registry's rules (validate_entry): a bad one
stops config loading with an error naming `rewards.backends.<name>.<field>`, worded as the registry file
and SetRewardBackend word it, because all three paths run the same check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from grpo_server.config import ConfigError, load_config, parse_config
from grpo_server.rewards.registry import BackendEntry, RegistryError, RewardRegistry, parse_registry

# (backend name, fields, the bad field's path below the backend) — each breaks one rule of validate_entry.
BAD_BACKENDS = [
    ("MATH", {"address": "localhost:50061"}, ""),
    ("a" * 64, {"address": "localhost:50061"}, ""),
    ("math", {"address": "localhost"}, "address"),
    ("math", {"address": "localhost:0"}, "address"),
    ("math", {"address": "localhost:65536"}, "address"),
    ("math", {"address": "http://localhost:50061"}, "address"),
    ("math", {"address": "localhost:\uff15\uff10\uff10\uff16\uff11"}, "address"),  # a fullwidth port
    ("math", {"address": "[127.0.0.1]:50061"}, "address"),  # brackets hold an IPv6 address only
    ("math", {"address": "localhost:50061", "timeout_seconds": -1.0}, "timeout_seconds"),
    ("math", {"address": "localhost:50061", "timeout_seconds": float("inf")}, "timeout_seconds"),
    ("math", {"address": "localhost:50061", "timeout_seconds": float("nan")}, "timeout_seconds"),
    ("math", {"address": "localhost:50061", "timeout_seconds": 1e10}, "timeout_seconds"),
    ("math", {"address": "localhost:50061", "max_batch_size": -1}, "max_batch_size"),
    ("math", {"address": "localhost:50061", "max_concurrency": -2}, "max_concurrency"),
    ("math", {"address": "localhost:50061", "token_file": ""}, "token_file"),
]


def _config_error(backends: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "trainer.yaml"
    path.write_text(yaml.safe_dump({"rewards": {"backends": backends}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return str(err.value)


def _line(text: str, field: str) -> str:
    """The description after `field: ` in a ConfigError's text (one problem per line)."""
    for part in text.splitlines():
        part = part.strip()
        if part.startswith(f"{field}: "):
            return part[len(field) + 2:]
    raise AssertionError(f"no error for {field!r} in:\n{text}")


def _violation(err: RegistryError, field: str) -> str:
    found = {v.field: v.description for v in err.violations}
    assert field in found, f"no violation of {field!r} in {found}"
    return found[field]


@pytest.mark.parametrize(("name", "fields", "bad"), BAD_BACKENDS, ids=[f"{n[:8]}-{b or 'name'}-{i}" for i, (n, _, b) in enumerate(BAD_BACKENDS)])
def test_bad_config_backend_fails_loading_with_the_registry_files_wording(
    name: str, fields: dict[str, Any], bad: str, tmp_path: Path
) -> None:
    config_field = f"rewards.backends.{name}" + (f".{bad}" if bad else "")
    from_config = _line(_config_error({name: fields}, tmp_path), config_field)

    with pytest.raises(RegistryError) as err:
        parse_registry(yaml.safe_dump({"backends": {name: fields}}))
    from_file = _violation(err.value, f"backends.{name}.{bad or 'name'}")
    assert from_config == from_file


# SetRewardBackend reads an unset (0 / empty) timeout or token file as the default: not comparable there.
@pytest.mark.parametrize(("name", "fields", "bad"), [c for c in BAD_BACKENDS if c[2] != "token_file"])
def test_config_and_set_reward_backend_reject_the_same_values_in_the_same_words(
    name: str, fields: dict[str, Any], bad: str, tmp_path: Path
) -> None:
    from_config = _line(_config_error({name: fields}, tmp_path), f"rewards.backends.{name}" + (f".{bad}" if bad else ""))
    with pytest.raises(RegistryError) as err:
        RewardRegistry().set(BackendEntry(name=name, **fields))
    assert from_config == _violation(err.value, f"backend.{bad or 'name'}")


def test_every_bad_backend_and_field_is_named_at_once(tmp_path: Path) -> None:
    text = _config_error(
        {"math": {"address": "nope"}, "code": {"address": "sandbox:50062", "max_concurrency": 0, "timeout_seconds": 0}},
        tmp_path,
    )
    assert "rewards.backends.math.address: 'nope' is not HOST:PORT" in text
    assert "rewards.backends.code.max_concurrency: 0 is not an integer >= 1" in text
    assert "rewards.backends.code.timeout_seconds: 0.0 is not a finite number of seconds > 0" in text


def test_wrong_types_are_errors_not_coercions() -> None:
    # The registry file refuses "30" for a number and "yes" for a flag; so does the config.
    for field, value in (("timeout_seconds", "30"), ("tls", "yes"), ("max_concurrency", 2.5), ("address", 50061)):
        with pytest.raises(ConfigError, match=rf"rewards\.backends\.math\.{field}:"):
            parse_config({"rewards": {"backends": {"math": {"address": "localhost:50061", field: value}}}})


def test_unknown_backend_field_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"rewards\.backends\.math\.timeout:"):
        parse_config({"rewards": {"backends": {"math": {"address": "localhost:50061", "timeout": 5}}}})


def test_good_backends_load_as_the_registry_file_would_read_them(tmp_path: Path) -> None:
    spec = {"address": "[::1]:50061", "timeout_seconds": 5, "max_batch_size": 32, "max_concurrency": 2,
            "tls": True, "token_file": "/run/secrets/math-token"}
    path = tmp_path / "trainer.yaml"
    path.write_text(yaml.safe_dump({"rewards": {"backends": {"math_v2": spec, "code": {"address": "sandbox.ns.svc:50062"}}}}))
    cfg = load_config(path)
    from_file = parse_registry(yaml.safe_dump({"backends": {"math_v2": spec}}))["math_v2"]
    assert BackendEntry(name="math_v2", source="registry_file", **cfg.rewards.backends["math_v2"].model_dump()) == from_file
    assert cfg.rewards.backends["code"].timeout_seconds == 30.0 and cfg.rewards.backends["code"].max_concurrency == 4


def test_default_rewards_need_a_backend_name_and_a_finite_positive_weight() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"rewards": {"default": [{"backend": "math"}, {"backend": "Code!", "weight": float("inf")}]}})
    text = str(err.value)
    assert "rewards.default[1].backend:" in text and "rewards.default[1].weight:" in text
    assert "rewards.default[0]" not in text
    with pytest.raises(ConfigError, match=r"rewards\.default\[0\]\.weight:"):
        parse_config({"rewards": {"default": [{"backend": "math", "weight": 0}]}})
