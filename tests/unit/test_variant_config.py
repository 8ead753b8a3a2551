"""The variants' settings as the config checks them: combinations that would do nothing, or not what
their documentation says, are refused at load naming the fields; the SDPO-only run has no KL term."""

from __future__ import annotations

from typing import Any

import pytest

from grpo_server.config import ConfigError, parse_config, with_overrides


def _refused(algorithm: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config({"algorithm": algorithm})
    return str(err.value)


def test_sdpo_alone_loads_no_kl_reference_by_default() -> None:
    # GRPO's default beta 0.04 would build a reference model and score every step with it for a KL term
    # the distillation-only loss never adds.
    assert parse_config({"algorithm": {"name": "sdpo"}}).algorithm.beta == 0.0
    assert parse_config({"algorithm": {"name": "grpo"}}).algorithm.beta == 0.04
    again = with_overrides(parse_config({"algorithm": {"name": "sdpo"}}), server={"listen": "127.0.0.1:0"})
    assert again.algorithm.beta == 0.0


def test_sdpo_alone_with_a_kl_weight_is_refused_naming_both_fields() -> None:
    text = _refused({"name": "sdpo", "beta": 0.04})
    assert "algorithm.beta" in text and "algorithm.name is 'sdpo'" in text


@pytest.mark.parametrize("epsilon_high", [0.2, 0.28])
def test_delta_not_above_the_upper_clip_is_refused(epsilon_high: float) -> None:
    text = _refused({"delta": 1 + epsilon_high - 0.05, "epsilon_high": epsilon_high})
    assert "algorithm.delta" in text and "algorithm.epsilon_high" in text
    assert parse_config({"algorithm": {"delta": 1 + epsilon_high + 0.05, "epsilon_high": epsilon_high}})


@pytest.mark.parametrize(
    ("algorithm", "field", "because"),
    [
        ({"tis_level": "sequence"}, "tis_level", "algorithm.tis_cap is unset"),
        ({"max_resample_rounds": 4}, "max_resample_rounds", "algorithm.dynamic_sampling is off"),
        ({"overlong_penalty_factor": 0.5}, "overlong_penalty_factor", "algorithm.overlong_cache_tokens is 0"),
        ({"name": "sdpo", "tis_cap": 2.0}, "tis_cap", "algorithm.name is 'sdpo'"),
        ({"name": "sdpo", "importance_sampling_level": "sequence"}, "importance_sampling_level",
         "algorithm.name is 'sdpo'"),
        ({"name": "sdpo", "aggregation": "dapo"}, "aggregation", "algorithm.name is 'sdpo'"),
        ({"name": "sdpo", "epsilon_high": 0.28}, "epsilon_high", "algorithm.name is 'sdpo'"),
        ({"name": "sdpo", "delta": 2.0}, "delta", "algorithm.name is 'sdpo'"),
        ({"name": "sdpo", "sdpo_top_k": 8}, "sdpo_top_k", "algorithm.sdpo_loss is 'sampled_reverse_kl'"),
        ({"name": "sdpo", "sdpo_loss": "jsd", "sdpo_kl_kind": "reverse"}, "sdpo_kl_kind", "not 'logit_kl'"),
        ({"name": "grpo", "sdpo_weight": 0.5, "sdpo_jsd_alpha": 0.3}, "sdpo_jsd_alpha", "not 'jsd'"),
        ({"name": "sdpo", "sdpo_teacher": "live", "sdpo_ema_rate": 0.5}, "sdpo_ema_rate", "not 'ema'"),
        ({"process_supervision": True, "advantage_scale": "batch"}, "advantage_scale",
         "algorithm.process_supervision normalises step rewards"),
        ({"name": "sdpo", "process_supervision": True}, "process_supervision", "algorithm.name is 'sdpo'"),
        # the penalty was computed, reported (overlong/penalty_mean) and read by nothing
        ({"process_supervision": True, "overlong_cache_tokens": 4}, "overlong_cache_tokens",
         "takes its advantages from step rewards alone"),
        # no surrogate reads the advantages; the threshold only picks siblings; no adapter to configure
        ({"name": "sdpo", "beta": 0.0, "advantage_scale": "batch"}, "advantage_scale", "algorithm.name is 'sdpo'"),
        ({"name": "sdpo", "beta": 0.0, "advantage_eps": 0.5}, "advantage_eps", "algorithm.name is 'sdpo'"),
        ({"sdpo_weight": 0.5, "sdpo_use_siblings": False, "sdpo_success_threshold": 0.5}, "sdpo_success_threshold",
         "algorithm.sdpo_use_siblings is off"),
        ({"lora_alpha": 8}, "lora_alpha", "algorithm.lora_rank is 0"),
        ({"lora_dropout": 0.1}, "lora_dropout", "algorithm.lora_rank is 0"),
        ({"lora_target_modules": ["q_proj"]}, "lora_target_modules", "algorithm.lora_rank is 0"),
    ],
)
def test_a_setting_the_rest_of_the_config_makes_inert_is_refused(
    algorithm: dict[str, Any], field: str, because: str
) -> None:
    text = _refused(algorithm)
    assert f"algorithm.{field}" in text and "has no effect" in text and because in text, text


@pytest.mark.parametrize(
    "algorithm",
    [
        {"tis_cap": 2.0, "tis_level": "sequence"},
        {"dynamic_sampling": True, "max_resample_rounds": 4},
        {"overlong_cache_tokens": 4, "overlong_penalty_factor": 0.5},
        {"process_supervision": True, "overlong_cache_tokens": 4, "sdpo_weight": 0.5},  # SDPO reads it
        {"name": "sdpo", "sdpo_loss": "logit_kl", "sdpo_top_k": 8, "sdpo_kl_kind": "reverse"},
        {"name": "sdpo", "sdpo_loss": "jsd", "sdpo_top_k": 8, "sdpo_jsd_alpha": 0.3},
        {"name": "sdpo", "sdpo_teacher": "ema", "sdpo_ema_rate": 0.5, "beta": 0.0},
        {"lora_rank": 8, "lora_alpha": 8, "lora_dropout": 0.1, "lora_target_modules": ["q_proj"]},
        {"sdpo_weight": 0.5, "sdpo_success_threshold": 0.5},  # siblings on: the threshold picks them
        {"name": "grpo", "sdpo_weight": 0.5, "beta": 0.04, "tis_cap": 2.0, "aggregation": "dapo"},
        # SDPO off: its knobs are carried but inert (documented; tests/integration/variants relies on it).
        {"name": "grpo", "sdpo_loss": "jsd", "sdpo_jsd_alpha": 0.25, "sdpo_teacher": "live"},
        {"aggregation": "dapo", "epsilon_high": 0.28, "delta": 1.5, "importance_sampling_level": "sequence"},
        {"process_supervision": True, "aggregation": "dapo", "beta": 0.04},
    ],
)
def test_combinations_that_work_still_load(algorithm: dict[str, Any]) -> None:
    parse_config({"algorithm": algorithm})
