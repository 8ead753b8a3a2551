"""LoRA training through `peft`: wrap the policy, push MERGED weights (plain Hugging Face names) to the
rollout engine and into exports, and write the adapter alone beside a merged export.

The rollout engine (vLLM or a private HF copy) knows nothing about adapters: it receives W + s * B @ A
under the base model's parameter names, computed on the fly without touching the trained module (peft's
merge_and_unload would rewrite it in place). Source: Hu et al. 2021, "LoRA"; peft's LoraLayer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

PEFT_PREFIX = "base_model.model."
ADAPTER_FILE = "adapter_model.safetensors"


def apply_lora(
    model: torch.nn.Module,
    rank: int,
    alpha: int,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
) -> torch.nn.Module:
    """Wrap a causal LM in a peft LoRA model: base weights frozen, A/B adapters (rank `rank`, scale
    alpha / rank) on `target_modules`. Only the adapters have requires_grad, so the training engines'
    optimizers hold only them."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or ["q_proj", "k_proj", "v_proj", "o_proj"],
        bias="none",
        task_type="CAUSAL_LM",
    )
    _check_targets(model, config.target_modules)
    return get_peft_model(model, config)  # type: ignore[arg-type]


def _check_targets(model: Any, targets: Any) -> None:
    """Refuse LoRA targets the trainer cannot train or export faithfully (ValueError naming the config
    field): the output head, whose weight the loss reads directly (its adapter would never train), and,
    when the model ties its output head to the input embedding, that embedding (a merged export, and the
    weights the rollout engine gets, would tie the head to the adapted embedding the policy does not use
    for its head)."""
    from peft.tuners.tuners_utils import check_target_module_exists

    config = type("Targets", (), {"target_modules": targets, "layers_to_transform": None,
                                  "layers_pattern": None, "exclude_modules": None})()
    names = {id(m): n for n, m in model.named_modules()}
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for module, why in ((head, "the output head: the loss reads its weight directly, so its adapter would never "
                                "train"),
                        (embedding if tied else None, "the input embedding of a model whose output head shares "
                                                      "it (tie_word_embeddings): exports and rollouts would tie the "
                                                      "head to the adapted embedding, which the policy's head does "
                                                      "not use")):
        name = names.get(id(module)) if module is not None else None
        if name and check_target_module_exists(config, name):
            raise ValueError(f"algorithm.lora_target_modules names {name!r}, {why}; leave it out")


def is_lora(model: Any) -> bool:
    """True when `model` is a peft model."""
    return hasattr(model, "peft_config") and hasattr(model, "base_model")


def _hf_name(peft_name: str) -> str:
    name = peft_name[len(PEFT_PREFIX):] if peft_name.startswith(PEFT_PREFIX) else peft_name
    return name.replace(".base_layer.", ".")


def merged_named_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, tensor) of the merged model: every base parameter under its original name, LoRA-wrapped
    linear weights replaced by W + scaling * B @ A (active adapter), adapters themselves left out.
    Tensors are new (merged) or detached views of the live weights."""
    from peft.tuners.lora import LoraLayer

    merged: dict[str, torch.Tensor] = {}
    for module_name, layer in model.named_modules():
        if isinstance(layer, LoraLayer):
            module: Any = layer
            base = module.get_base_layer()
            weight = base.weight.detach()
            with torch.no_grad():
                for adapter in module.active_adapters:
                    if adapter in module.lora_A:
                        delta = module.get_delta_weight(adapter)
                        weight = weight + delta.to(weight.dtype)
            merged[_hf_name(module_name + ".base_layer.weight")] = weight
    for name, param in model.named_parameters():
        if "lora_" in name:
            continue
        hf = _hf_name(name)
        yield hf, merged.pop(hf, param.detach())
    for hf, tensor in merged.items():  # pragma: no cover - every merged weight is a named parameter
        yield hf, tensor


def policy_weights(model: torch.nn.Module, named: Iterator[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """The weights to push to the rollout engine or export: merged when `model` is a LoRA model, else
    `named` (the engine's own named_weights) unchanged."""
    return merged_named_weights(model) if is_lora(model) else named


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the adapter weights alone (peft's saved names), for an adapter-only export."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}  # type: ignore[arg-type]


def write_adapter(model: torch.nn.Module, state: Mapping[str, torch.Tensor], directory: Path, step: int) -> Path:
    """Write an adapter-only directory that `peft.PeftModel.from_pretrained(base, directory)` loads:
    adapter_config.json, adapter_model.safetensors and a small grpo_adapter.json naming the step."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    peft_config: Any = model.peft_config  # a peft model's {adapter name: LoraConfig}
    peft_config["default"].save_pretrained(str(directory))
    save_file(dict(state), str(directory / ADAPTER_FILE))
    (directory / "grpo_adapter.json").write_text(json.dumps({"step": step}) + "\n")
    return directory


def adapter_dir_for(export_dir: str | Path) -> Path:
    """Where the adapter-only export of a merged export goes: `<export>-adapter`, beside it."""
    path = Path(export_dir)
    return path.with_name(path.name + "-adapter")


class AdapterExports:
    """Adds an adapter-only export beside every merged export of a LoRA model (a no-op otherwise).

    `capture(step)` is called inside the exporter's weight snapshot (under the step lock), so the adapter
    belongs to the same step as the merged weights; `wrap(manager)` returns the manager with `start`
    writing that adapter to `<destination>-adapter` before returning.

    The snapshot runs in the thread that calls `start`, so the capture is kept for that thread: exports
    that overlap (one waits while its merged weights are written, another starts meanwhile, of the same
    step or a later one) each write their own. A per-step slot let the second take the first's.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.enabled = is_lora(model)
        self._captured = threading.local()

    def capture(self, step: int) -> None:
        """Copy the adapter weights of `step` for this thread's export (the caller holds the step lock)."""
        if self.enabled:
            self._captured.value = (step, adapter_state(self.model))

    def wrap(self, manager: Any) -> Any:
        """`manager` unchanged without LoRA; else a proxy whose `start` also writes the adapter."""
        return _AdapterExportManager(manager, self) if self.enabled else manager

    def take(self) -> tuple[int, dict[str, torch.Tensor]] | None:
        """This thread's capture (step, adapter state), forgotten here; None when there is none."""
        captured = getattr(self._captured, "value", None)
        self._captured.value = None
        return captured

    def write(self, captured: tuple[int, dict[str, torch.Tensor]] | None, destination: str | Path) -> None:
        """Write a capture beside the merged export at `destination` (nothing when there is none)."""
        if captured is not None:
            step, state = captured
            write_adapter(self.model, state, adapter_dir_for(destination), step)


class _AdapterExportManager:
    """An ExportManager whose exports also write the adapter alone (see AdapterExports)."""

    def __init__(self, manager: Any, adapters: AdapterExports) -> None:
        self.manager = manager
        self.adapters = adapters

    def start(self, destination: str | None, wait: bool) -> Any:
        if destination:  # `<destination>-adapter` is held to the destination's rules, before anything starts
            from grpo_server.checkpoint import check_destination

            check_destination(adapter_dir_for(destination))
        try:
            job = self.manager.start(destination, wait)
        finally:
            captured = self.adapters.take()  # also when start was refused after the snapshot
        self.adapters.write(captured, job.destination)
        return job

    def get(self, export_id: str) -> Any:
        return self.manager.get(export_id)

    def finish(self, timeout: float) -> list[Any]:
        return self.manager.finish(timeout)

    def page(self, state: str | None, before: int, limit: int) -> tuple[list[Any], int]:
        return self.manager.page(state, before, limit)
