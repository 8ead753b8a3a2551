"""What a cluster would only show at install time, checked at render time instead: a value the chart's
schema accepts must give files and flags the programs accept. Each refused case below is first shown to
be refused by the program itself (the trainer's config loader, the registry parser, the tokens parser),
then shown to be refused by `helm install` with the field named."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_support import (
    CHART,
    DEEPSPEED,
    GPU_VALUES,
    TRAINER,
    config_map_yaml,
    container,
    deep_merge,
    load_values,
    render,
    render_error,
    reward_name,
)

from grpo_server.api.auth import TokensFileError, parse_tokens
from grpo_server.config import ConfigError, parse_config
from grpo_server.rewards.registry import RegistryError, parse_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from genhelmschema import PREFIX, chart_defs, generated_defs  # noqa: E402

DEFAULT_TRAINER_CONFIG = yaml.safe_load((CHART / "values.yaml").read_text())["trainer"]["config"]


def test_chart_schema_holds_the_trainer_config_schema_generated_from_the_trainer() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["trainer"]["properties"]["config"] == {"$ref": f"#/$defs/{PREFIX}"}
    assert chart_defs(schema) == generated_defs(), "values.schema.json is stale: run .venv/bin/python tools/genhelmschema.py"


# (trainer.config override, a word the install error must contain)
REFUSED_CONFIGS = [
    ({"model": {"cache_dir": ""}}, "cache_dir"),
    ({"model": {"cache_dir": "  "}}, "cache_dir"),
    ({"algorithmm": {"group_size": 8}}, "algorithmm"),
    ({"algorithm": {"group_size": 1}}, "group_size"),
    ({"algorithm": {"group_size": "8"}}, "group_size"),
    ({"rollout": {"engine": "sglang"}}, "engine"),
    ({"training": {"learning_rate": 0}}, "learning_rate"),
    ({"rewards": {"default": [{"backend": "Math"}]}}, "backend"),
    ({"limits": {"max_watch_streams": 64}}, "max_watch_streams"),
    ({"server": {"max_workers": 48}}, "max_workers"),
    ({"limits": {"max_watch_streams": 100}, "server": {"max_workers": 100}}, "max_watch_streams"),
    ({"model": {"source": "path"}}, "model.path"),
    ({"rewards": {"backends": {"judge": {"address": "judge:50051", "timeout_seconds": 90000}}}}, "timeout_seconds"),
]


@pytest.mark.parametrize(("override", "word"), REFUSED_CONFIGS)
def test_a_trainer_config_the_trainer_refuses_is_refused_at_install(override: dict[str, Any], word: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(deep_merge(DEFAULT_TRAINER_CONFIG, override))
    assert word in render_error({"trainer": {"config": override}})


@pytest.mark.parametrize(
    "override",
    [
        {"limits": {"max_watch_streams": 96}, "server": {"max_workers": 128}},
        {"server": {"max_workers": 49}},
        {"limits": {"max_watch_streams": 63}},
        {"limits": {"max_watch_streams": 8}, "server": {"max_workers": 16}},
        {"training": {"learning_rate": 1e-5, "adam_betas": [0.9, 0.95]}, "rollout": {"temperature": 0.7}},
        {"model": {"source": "path", "path": "/models/policy"}},
    ],
)
def test_a_trainer_config_the_trainer_accepts_installs_and_lands_where_given(override: dict[str, Any]) -> None:
    rendered = render({"trainer": {"config": override}})
    config = parse_config(config_map_yaml(rendered, f"{TRAINER}-config", "config.yaml"))
    for section, fields in override.items():
        for key, value in fields.items():
            got = getattr(getattr(config, section), key)
            assert (list(got) if isinstance(got, tuple) else got) == value, f"{section}.{key}"


def test_the_api_and_metrics_ports_must_differ() -> None:
    # The trainer refuses the same address for both (server.listen and server.metrics_listen).
    with pytest.raises(ConfigError):
        parse_config({"server": {"listen": "0.0.0.0:9090", "metrics_listen": "0.0.0.0:9090"}})
    assert "metricsPort" in render_error({"trainer": {"grpcPort": 9090}})
    multinode = {"enabled": True, "rendezvousPort": 50051}
    assert "rendezvousPort" in render_error({"trainer": {**DEEPSPEED, "multiNode": multinode}})


def test_vllm_is_refused_beside_several_deepspeed_ranks() -> None:
    """The trainer refuses it (vLLM, in rank 0's process, joined the ranks' process group and waited for
    them in its set-up: the run never loaded); auto (the chart's default) picks HF there."""
    vllm = {"config": {"training": {"engine": "deepspeed"}, "rollout": {"engine": "vllm"}}}
    for trainer in ({**vllm, "multiNode": {"enabled": True}}, {**vllm, "gpu": {"count": 2}}):
        assert "trainer.config.rollout.engine: vllm cannot run beside DeepSpeed's 2 ranks" in render_error(
            {"trainer": trainer})
    render({"trainer": {**vllm, "gpu": {"count": 1}}})  # one rank: vLLM runs beside it
    render({"trainer": {**DEEPSPEED, "multiNode": {"enabled": True}}})  # the default, auto


def test_trainer_tls_is_refused_because_the_grpc_probes_speak_plaintext() -> None:
    # Kubernetes' grpc probe has no TLS: the pod would never turn ready; nor does the chart mount certificates.
    error = render_error({"trainer": {"config": {"server": {"tls_cert": "/tls/tls.crt", "tls_key": "/tls/tls.key"}}}})
    assert "tls_cert" in error


def _tokens_error(tokens: list[dict[str, Any]]) -> str:
    with pytest.raises(TokensFileError):
        parse_tokens({"tokens": tokens})
    return render_error({"auth": {"tokens": tokens}})


def test_a_token_without_roles_is_refused_at_install() -> None:
    assert "roles" in _tokens_error([{"name": "ci", "token_sha256": "0" * 64, "roles": []}])


def test_a_token_name_used_twice_is_refused_at_install() -> None:
    token = {"name": "ci", "token_sha256": "0" * 64, "roles": ["read"]}
    assert "ci" in _tokens_error([token, {**token, "token_sha256": "1" * 64}])


def test_one_token_under_two_entries_is_refused_at_install() -> None:
    """The trainer refuses the file (which entry's roles would the token carry?)."""
    first = {"name": "ops", "token_sha256": "ab" * 32, "roles": ["admin"]}
    error = _tokens_error([first, {"name": "dashboard", "token_sha256": "ab" * 32, "roles": ["read"]}])
    assert "same token_sha256" in error and '"dashboard"' in error and '"ops"' in error


@pytest.mark.parametrize(
    ("entry", "word"),
    [
        ({"address": "judge:50051", "timeout": 30}, "timeout"),
        ({"address": "judge:50051", "timeout_seconds": "30"}, "timeout_seconds"),
        ({"address": "judge:50051", "timeout_seconds": 0}, "timeout_seconds"),
        ({"address": "judge:50051", "timeout_seconds": 90000}, "timeout_seconds"),
        ({"address": "judge"}, "address"),
        ({"address": "judge:70000"}, "address"),
        ({"address": "judge:50051", "max_concurrency": 0}, "max_concurrency"),
        ({"address": "judge:50051", "tls": "yes"}, "tls"),
        ({"address": "judge:50051", "token_file": ""}, "token_file"),
        ({"address": "judge:50051", "ca_file": "/tls/ca.crt"}, "tls"),
        ({"address": "judge:50051", "tls": False, "ca_file": "/tls/ca.crt"}, "tls"),
        ({"address": "judge:50051", "tls": True, "cert_file": "/tls/tls.crt"}, "key_file"),
        ({"address": "judge:50051", "tls": True, "key_file": "/tls/tls.key"}, "cert_file"),
        ({"address": "judge:50051", "tls": True, "ca_file": ""}, "ca_file"),
    ],
)
def test_an_extra_backend_the_registry_refuses_is_refused_at_install(entry: dict[str, Any], word: str) -> None:
    with pytest.raises(RegistryError):
        parse_registry(yaml.safe_dump({"backends": {"judge": entry}}))
    assert word in render_error({"trainer": {"extraBackends": {"judge": entry}}})


def test_an_empty_backend_token_file_is_refused_at_install() -> None:
    with pytest.raises(RegistryError):
        parse_registry(yaml.safe_dump({"backends": {"math": {"address": "m:50051", "token_file": ""}}}))
    assert "token_file" in render_error({"rewards": {"math": {"registry": {"token_file": ""}}}})


@pytest.mark.parametrize(("entry", "word"), [
    ({"timeout_seconds": 172800}, "timeout_seconds"),  # the trainer's registry refuses over a day
    ({"max_batch_size": 3_000_000_000}, "max_batch_size"),  # the service's --max-batch: at most int32
    ({"max_concurrency": 3_000_000_000}, "max_concurrency"),  # the service's --max-concurrency: the same
])
def test_a_reward_service_registry_value_the_programs_refuse_is_refused_at_install(entry: dict[str, Any],
                                                                                    word: str) -> None:
    """Each rendered, then the trainer (registry file) or the service (its flag) exited 2: a crash loop."""
    assert word in render_error({"rewards": {"math": {"registry": entry}}})


@pytest.mark.parametrize("profile", [
    {"type": "Localhost"},  # Kubernetes: localhostProfile is required with Localhost
    {"type": "Unconfined", "localhostProfile": "profiles/grpo.json"},  # ... and only with Localhost
    {"type": "Localhost", "localhostProfile": ""},
])
@pytest.mark.parametrize("value", ["sandboxSeccompProfile", "sandboxAppArmorProfile"])
def test_a_sandbox_security_profile_the_api_server_refuses_is_refused_at_install(value: str, profile: dict) -> None:
    assert value in render_error({"rewards": {"code": {value: profile}}})


def test_a_localhost_sandbox_profile_with_its_file_installs() -> None:
    rendered = render({"rewards": {"code": {"sandboxSeccompProfile": {"type": "Localhost",
                                                                        "localhostProfile": "profiles/grpo.json"}}}})
    c = container(rendered.get("Deployment", reward_name("code"))["spec"]["template"], "code")
    assert c["securityContext"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": "profiles/grpo.json"}


def _service_args(rendered, backend: str):
    from grpo_rewards.code_sandbox.server import build_parser as code_parser
    from grpo_rewards.math_verifier.server import build_parser as math_parser
    from grpo_rewards.reward_model.server import build_parser as rm_parser

    parser = {"math": math_parser, "code": code_parser, "rm": rm_parser}[backend]()
    c = container(rendered.get("Deployment", reward_name(backend))["spec"]["template"], backend)
    assert c["command"][0] == parser.prog
    return parser.parse_args(c["command"][1:] + c["args"])


@pytest.mark.parametrize("backend", ["math", "code", "rm"])
def test_each_service_takes_the_batches_the_trainer_sends_it(backend: str) -> None:
    # A Score call over the service's --max-batch is INVALID_ARGUMENT, which the trainer does not retry:
    # every item of the batch would be masked. The registry's max_batch_size must fit the service's limit.
    values = load_values(GPU_VALUES)
    for size in (0, 16, 64, 128, 512):
        rendered = render(deep_merge(values, {"rewards": {backend: {"registry": {"max_batch_size": size}}}}))
        entry = parse_registry(rendered.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"])[backend]
        assert entry.max_batch_size == size
        args = _service_args(rendered, backend)
        # 0: the trainer asks the service (Describe) for its limit.
        assert entry.max_batch_size <= args.max_batch, (backend, size, args.max_batch)


@pytest.mark.parametrize("backend", ["math", "code", "rm"])
def test_each_service_takes_the_concurrent_calls_the_trainer_makes(backend: str) -> None:
    # The trainer keeps up to the registry's max_concurrency Score calls in flight; a call over the
    # service's --max-concurrency (default 8) is RESOURCE_EXHAUSTED and opens the backend's breaker:
    # with 16 and the default, 32 of 64 items were masked.
    values = load_values(GPU_VALUES)
    for concurrency in (1, 4, 8, 16, 64):
        rendered = render(deep_merge(values, {"rewards": {backend: {"registry": {"max_concurrency": concurrency}}}}))
        entry = parse_registry(rendered.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"])[backend]
        assert entry.max_concurrency == concurrency
        assert _service_args(rendered, backend).max_concurrency >= concurrency, (backend, concurrency)


@pytest.mark.parametrize("backend", ["math", "code", "rm"])
def test_every_rendered_service_command_parses_and_listens_on_the_charts_ports(gpu_render, backend: str) -> None:
    args = _service_args(gpu_render, backend)
    assert (args.listen, args.metrics_listen) == ("0.0.0.0:50051", "0.0.0.0:9090")


@pytest.mark.parametrize(("values", "field"), [
    ({"trainer": {"livenessProbe": {"successThreshold": 3}}}, "successThreshold"),
    ({"trainer": {"startupProbe": {"successThreshold": 2}}}, "successThreshold"),
    ({"rewards": {"math": {"livenessProbe": {"successThreshold": 2}}}}, "successThreshold"),
    ({"trainer": {"persistence": {"accessModes": []}}}, "accessModes"),
    ({"trainer": {**DEEPSPEED, "multiNode": {"enabled": True, "checkpoints": {"size": ""}}}}, "size"),
], ids=["liveness success", "startup success", "reward liveness success", "no access mode", "empty checkpoints size"])
def test_values_the_api_server_would_refuse_are_refused_at_install(values: dict, field: str) -> None:
    """Each rendered before into an object Kubernetes refuses (a liveness or startup probe needs
    successThreshold 1, a claim at least one access mode and a storage request)."""
    assert field in render_error(values)


def test_a_readiness_probe_may_need_several_successes() -> None:
    rendered = render({"trainer": {"readinessProbe": {"successThreshold": 2}}})
    pod = rendered.get("StatefulSet", TRAINER)["spec"]["template"]
    assert container(pod, "trainer")["readinessProbe"]["successThreshold"] == 2
