"""The trainer config: defaults that work, shipped examples that validate, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_server.config import (
    CheckpointConfig,
    Config,
    ConfigError,
    load_config,
    parse_config,
    with_overrides,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_grpo_literature() -> None:
    cfg = Config()
    assert cfg.algorithm.epsilon_low == 0.2 and cfg.algorithm.epsilon_high == 0.2
    assert cfg.algorithm.beta == 0.04
    assert cfg.training.learning_rate == 1e-6
    assert cfg.algorithm.inner_iterations == 1


EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))

# What each shipped example is for, beyond validating: (model.source, algorithm.name, effective SDPO
# weight, default reward backends).
EXAMPLE_SPECIFICS: dict[str, tuple[str, str, float, list[str]]] = {
    "tiny.yaml": ("tiny", "grpo", 0.0, ["math"]),
    "demo.yaml": ("smollm2", "grpo", 0.0, ["math"]),
    "sdpo-code.yaml": ("smollm2", "sdpo", 1.0, ["code"]),
}


def test_the_known_examples_are_shipped() -> None:
    assert set(EXAMPLE_SPECIFICS) <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_shipped_examples_validate(name: str) -> None:
    cfg = load_config(ROOT / "examples" / name)
    assert cfg.rewards.default, "an example must name the rewards of prompts that name none"
    assert cfg.store_dir.startswith("./runs/")
    if name in ("tiny.yaml", "demo.yaml"):
        assert cfg.rewards.default[0].backend == "math"
    if name in EXAMPLE_SPECIFICS:
        source, algorithm, sdpo_weight, backends = EXAMPLE_SPECIFICS[name]
        assert cfg.model.source == source
        assert cfg.algorithm.name == algorithm
        assert cfg.algorithm.effective_sdpo_weight == sdpo_weight
        assert [r.backend for r in cfg.rewards.default] == backends


def test_sdpo_example_distils_from_the_code_sandbox() -> None:
    a = load_config(ROOT / "examples" / "sdpo-code.yaml").algorithm
    assert a.name == "sdpo" and a.sdpo_use_feedback and a.sdpo_use_siblings
    assert a.beta == 0.0  # no reference model: the teacher is the policy itself


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_shipped_example_is_named_in_the_config_doc(name: str) -> None:
    assert f"`examples/{name}`" in (ROOT / "docs" / "configuration.md").read_text()


# ---- SDPO weight: the distillation loss alone (sdpo) or blended with GRPO (grpo + sdpo_weight)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ({}, 0.0),
        ({"name": "grpo"}, 0.0),
        ({"name": "grpo", "sdpo_weight": 0.3}, 0.3),
        ({"name": "grpo", "sdpo_weight": 0}, 0.0),
        ({"name": "sdpo"}, 1.0),
        ({"name": "sdpo", "sdpo_weight": 2.5}, 2.5),
        ({"name": "sdpo", "sdpo_use_feedback": False}, 1.0),
        ({"name": "sdpo", "sdpo_use_siblings": False}, 1.0),
        ({"name": "grpo", "sdpo_use_feedback": False, "sdpo_use_siblings": False}, 0.0),
    ],
)
def test_effective_sdpo_weight(algorithm: dict[str, object], expected: float) -> None:
    cfg = parse_config({"algorithm": algorithm})
    assert cfg.algorithm.effective_sdpo_weight == expected


@pytest.mark.parametrize(
    ("algorithm", "field", "message"),
    [
        ({"name": "sdpo", "sdpo_weight": 0}, "algorithm.sdpo_weight", "must be > 0"),
        ({"name": "sdpo", "sdpo_use_feedback": False, "sdpo_use_siblings": False}, "algorithm.name",
         "needs sdpo_use_feedback or sdpo_use_siblings"),
        ({"name": "grpo", "sdpo_weight": 0.3, "sdpo_use_feedback": False, "sdpo_use_siblings": False},
         "algorithm.sdpo_weight", "needs sdpo_use_feedback or sdpo_use_siblings"),
        ({"name": "grpo", "sdpo_weight": -0.1}, "algorithm.sdpo_weight", "greater than or equal to 0"),
        ({"name": "sdpo", "sdpo_weight": -1}, "algorithm.sdpo_weight", "greater than or equal to 0"),
        ({"name": "sdpo", "sdpo_jsd_alpha": 1.5}, "algorithm.sdpo_jsd_alpha", "less than or equal to 1"),
        ({"name": "sdpo", "sdpo_top_k": 0}, "algorithm.sdpo_top_k", "greater than or equal to 1"),
        ({"name": "sdpo", "sdpo_ema_rate": 0}, "algorithm.sdpo_ema_rate", "greater than 0"),
        ({"name": "sdpo", "sdpo_loss": "kl"}, "algorithm.sdpo_loss", "sampled_reverse_kl"),
        ({"name": "sdpo", "sdpo_teacher": "frozen"}, "algorithm.sdpo_teacher", "ema"),
        ({"name": "dpo"}, "algorithm.name", "grpo"),
    ],
)
def test_invalid_sdpo_settings_name_the_field(algorithm: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"algorithm": algorithm})
    assert field in str(err.value) and message in str(err.value)


def test_errors_name_every_bad_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"algorithm": {"group_size": 1, "aggregation": "mean"}, "training": {"learning_rate": -1}})
    text = str(err.value)
    assert "algorithm.group_size" in text
    assert "algorithm.aggregation" in text
    assert "training.learning_rate" in text


def test_prompt_attempts_default_to_three_and_must_be_positive() -> None:
    assert Config().training.max_prompt_attempts == 3
    with pytest.raises(ConfigError, match="training.max_prompt_attempts"):
        parse_config({"training": {"max_prompt_attempts": 0}})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ConfigError, match="algorithm.betta"):
        parse_config({"algorithm": {"betta": 0.1}})


def test_a_misspelt_field_names_the_field_it_probably_meant() -> None:
    """A typo in a section, a list item or a mapping's value names the closest field; a field like none
    of them lists the section's fields, so the user need not open the docs to find the spelling."""
    with pytest.raises(ConfigError) as err:
        parse_config({
            "algorithm": {"group_sise": 4},
            "rewards": {"default": [{"backend": "math", "wieght": 2.0}],
                        "backends": {"math": {"address": "127.0.0.1:1", "timeout_secs": 5}}},
            "checkpoint": {"zzz": 1},
        })
    text = str(err.value)
    assert "algorithm.group_sise: unknown field: did you mean 'group_size'?" in text
    assert "rewards.default[0].wieght: unknown field: did you mean 'weight'?" in text
    assert "rewards.backends.math.timeout_secs: unknown field: did you mean 'timeout_seconds'?" in text
    fields = ", ".join(CheckpointConfig.model_fields)
    assert f"checkpoint.zzz: unknown field; this section has {fields}\n" in text + "\n", text
    assert fields.startswith("every_steps, keep")


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


def test_flags_replace_the_files_values_before_they_are_checked(tmp_path: Path) -> None:
    """--listen, --metrics-listen, --store-dir and --reward-backend (as cli.main passes them) replace what
    the file says even where the file's value is invalid; the file's other backends stay."""
    f = tmp_path / "c.yaml"
    f.write_text("store_dir: ''\nserver:\n  listen: nope\nrewards:\n  backends:\n"
                 "    math: {address: nope, timeout_seconds: -1}\n    code: {address: 'code:50051'}\n")
    with pytest.raises(ConfigError):
        load_config(f)
    cfg = load_config(f, flag_backends={"math", "rm"}, server={"listen": "127.0.0.1:0"}, store_dir=str(tmp_path / "s"))
    assert cfg.store_dir == str(tmp_path / "s") and cfg.server.listen == "127.0.0.1:0"
    # The flag's entry replaces math's whole, in the registry's layer of flags: the config's is left out.
    assert {n: b.address for n, b in cfg.rewards.backends.items()} == {"code": "code:50051"}
    cfg = load_config(None, flag_backends={"rm"}, store_dir="runs/x")  # without a file, too
    assert cfg.store_dir == "runs/x" and cfg.rewards.backends == {}


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"limits": {"retry_after_seconds": float("inf")}}, "limits.retry_after_seconds", "finite"),
    ({"algorithm": {"epsilon_high": float("nan")}}, "algorithm.epsilon_high", "finite"),
    ({"rewards": {"breaker_reset_seconds": float("inf")}}, "rewards.breaker_reset_seconds", "finite"),
    ({"auth": {"tokens_file": ""}}, "auth.tokens_file", "'' is not a path; leave the field out for its default"),
    ({"server": {"tls_cert": " ", "tls_key": "k"}}, "server.tls_cert", "is not a path"),
    ({"rewards": {"registry_file": ""}}, "rewards.registry_file", "is not a path"),
    ({"store_dir": ""}, "store_dir", "is not a path"),
    ({"rollout": {"top_k": 0}}, "rollout.top_k", "write -1 for off"),  # refused only after the model loaded
    # refused only after the model loaded, the run FAILED in a process that stayed up
    ({"rollout": {"max_new_tokens": 64, "vllm_max_model_len": 32}}, "rollout",
     "max_new_tokens 64 leaves no room for a prompt in vllm_max_model_len 32"),
    # accepted, then every step failed: torch's seed overflowed ("Overflow when unpacking long long")
    ({"training": {"seed": 2**45}}, "training.seed", "less than or equal to 4294967295"),
    ({"model": {"seed": -1}}, "model.seed", "greater than or equal to 0"),
    # the teacher copy of the policy held ZeRO-3's empty partitions: the first distilling step failed
    ({"algorithm": {"name": "sdpo", "sdpo_teacher": "ema"}, "training": {"engine": "deepspeed", "zero_stage": 3}},
     "(top level)", "algorithm.sdpo_teacher 'ema' keeps a copy of the policy, which training.zero_stage 3 partitions"),
    ({"training": {"lr_schedule": "cosine"}}, "training", "set training.max_steps, or use lr_schedule 'constant'"),
    ({"server": {"listen": "127.0.0.1:7000", "metrics_listen": "127.0.0.1:7000"}}, "server", "ports of their own"),
    ({"rewards": {"default": [{"backend": "math"}, {"backend": "math", "weight": 2}]}}, "rewards.default",
     "names math more than once"),
    ({"rollout": {"max_new_tokens": 16}, "algorithm": {"overlong_cache_tokens": 32}}, "(top level)",
     "every completion would be penalised"),
    # a warm-up as long as the run: the rate never reached learning_rate, nor decayed
    ({"training": {"max_steps": 4, "warmup_steps": 10, "lr_schedule": "linear"}}, "(top level)",
     "training.warmup_steps (10) must be less than the run's optimizer steps (training.max_steps 4 x "
     "algorithm.inner_iterations 1 = 4)"),
    ({"training": {"max_steps": 3, "warmup_steps": 6, "lr_schedule": "cosine"}, "algorithm": {"inner_iterations": 2}},
     "(top level)", "= 6): the learning rate would never reach training.learning_rate, nor decay ('cosine')"),
])
def test_settings_that_cannot_work_are_refused_at_load_naming_the_field(data: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    line = str(err.value).splitlines()[1]
    assert line.startswith(f"  {field}: ") and words in line and "Value error" not in line, str(err.value)


def test_numbers_in_exponent_form_without_a_dot_are_numbers_in_the_config_and_the_registry(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads `1e3` as a string: the config's lax number fields took it, the backends' strict
    # ones refused it ("Input should be a valid number"), and the registry file too.
    from grpo_server.rewards.registry import parse_registry

    f = tmp_path / "trainer.yaml"
    f.write_text("rewards:\n  breaker_reset_seconds: 6e1\n  backends:\n    math: {address: 'h:1', timeout_seconds: 1e3}\n"
                 "training:\n  learning_rate: 5E-6\n")
    cfg = load_config(f)
    assert (cfg.rewards.breaker_reset_seconds, cfg.rewards.backends["math"].timeout_seconds) == (60.0, 1000.0)
    assert cfg.training.learning_rate == 5e-6
    assert parse_registry("backends:\n  math: {address: 'h:1', timeout_seconds: 1.2e2}\n")["math"].timeout_seconds == 120.0
    assert parse_registry("backends:\n  math: {address: 'h:1', timeout_seconds: 12e1}\n")["math"].timeout_seconds == 120.0


def test_settings_that_do_work_still_load() -> None:
    cfg = parse_config({"training": {"lr_schedule": "cosine", "max_steps": 100, "warmup_steps": 99},
                        "server": {"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"},
                        "rollout": {"max_new_tokens": 16}, "algorithm": {"overlong_cache_tokens": 16}})
    assert cfg.training.max_steps == 100 and cfg.algorithm.overlong_cache_tokens == 16


def test_a_section_or_field_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys silently: the second `training` here would drop the first's
    learning rate without a word."""
    f = tmp_path / "twice.yaml"
    f.write_text("training:\n  learning_rate: 1.0e-5\nalgorithm:\n  beta: 0.0\n  beta: 0.04\n"
                 "training:\n  max_steps: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(err.value) == (
        f"invalid config {f}:\n"
        "  algorithm.beta: given twice (lines 4 and 5); each name and field may appear once\n"
        "  training: given twice (lines 1 and 6); each name and field may appear once")


def test_a_flag_replaces_an_invalid_value_of_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server:\n  listen: 'not-an-address'\n  max_workers: 8\nlimits:\n  max_watch_streams: 4\n")
    with pytest.raises(ConfigError, match="server.listen"):
        load_config(f)
    cfg = load_config(f, server={"listen": "127.0.0.1:0"})
    assert cfg.server.listen == "127.0.0.1:0" and cfg.server.max_workers == 8  # the rest of the section kept
    assert load_config(None, server={"listen": "127.0.0.1:7"}).server.listen == "127.0.0.1:7"


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"algorithm": {"prompts_per_step": True}}, "algorithm.prompts_per_step", "True is not a whole number"),
    ({"algorithm": {"group_size": 2.0}}, "algorithm.group_size", "2.0 is not a whole number"),
    ({"limits": {"max_queue_depth": "5"}}, "limits.max_queue_depth", "'5' is not a whole number"),
    ({"rollout": {"vllm_enforce_eager": "yes"}}, "rollout.vllm_enforce_eager", "'yes' is not true or false"),
    ({"training": {"gradient_checkpointing": 1}}, "training.gradient_checkpointing", "1 is not true or false"),
])
def test_a_value_of_another_kind_for_a_whole_number_or_a_flag_is_refused(data: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert f"  {field}: {words}" in str(err.value), str(err.value)


def test_numbers_with_a_fraction_stay_lax_for_yaml_s_sake() -> None:
    # PyYAML reads `1e-5` (no dot) as a string; refusing it would surprise everyone who writes it so.
    assert parse_config({"training": {"learning_rate": "1e-5"}}).training.learning_rate == 1e-5
    assert parse_config({"rollout": {"temperature": 1}}).rollout.temperature == 1.0
