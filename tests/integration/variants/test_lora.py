"""LoRA through peft: only adapters train, merged weights (base names) reach the rollout engine and the
export, and an adapter-only export beside the merged one loads with peft to the same model."""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path
from typing import Any

import torch
from variant_support import arithmetic_prompts, tiny_config

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.checkpoint import verify_manifest
from grpo_server.training.lora import adapter_dir_for, apply_lora, merged_named_weights


def perturbed_lora(model: torch.nn.Module) -> torch.nn.Module:
    peft_model = apply_lora(model, rank=4, alpha=8, target_modules=["q_proj", "v_proj"])
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # B starts at 0 (a no-op adapter): give it a value
                p.normal_(0.0, 0.5)
    return peft_model


def test_only_adapter_parameters_train(tiny) -> None:
    model, _ = tiny
    peft_model = apply_lora(model, rank=4, alpha=8)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_targets_the_trainer_cannot_train_or_export_faithfully_are_refused(tiny) -> None:
    """lm_head's adapter never trained (the loss reads the head's weight directly), and an adapter on the
    embedding of a model that ties its head to it made a merged export whose head differed from the
    policy's (max |logits| difference 0.995)."""
    import pytest

    model, _ = tiny
    assert model.config.tie_word_embeddings
    for targets, name in ((["q_proj", "lm_head"], "'lm_head'"), (["q_proj", "embed_tokens"], "'model.embed_tokens'")):
        with pytest.raises(ValueError, match=f"algorithm.lora_target_modules names {name}"):
            apply_lora(copy.deepcopy(model), rank=4, alpha=8, target_modules=targets)
    assert apply_lora(copy.deepcopy(model), rank=4, alpha=8, target_modules="all-linear") is not None


def test_merged_weights_equal_peft_merge_under_the_base_names(tiny) -> None:
    model, _ = tiny
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    base_names = set(base)
    peft_model = perturbed_lora(model)
    merged = dict(merged_named_weights(peft_model))
    reference: Any = copy.deepcopy(peft_model)
    reference = reference.merge_and_unload()
    expected = dict(reference.named_parameters())
    assert set(merged) == base_names == set(expected)
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, expected[name].detach(), msg=name)
    q = next(n for n in merged if n.endswith("q_proj.weight"))
    assert not torch.equal(merged[q], base[q])


def test_lora_run_syncs_merged_weights_and_exports_merged_plus_adapter(
    serve, start_trainer, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from variant_support import PromptRewardScorer

    cfg = tiny_config(
        rollout={"engine": "hf", "max_new_tokens": 6},
        algorithm={"lora_rank": 4, "lora_alpha": 8, "beta": 0.04},
        training={"max_steps": 2, "learning_rate": 5e-2},
        rewards={"default": [{"backend": "pr"}]},
    )
    app = start_trainer(cfg, tmp_path / "store", [("pr", serve(PromptRewardScorer()))])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(arithmetic_prompts(4))
    for report in client.iter_steps(after_step=0):
        assert report.state == trainer_pb2.STEP_STATE_COMPLETED
        if report.step >= 2:
            break
    export = client.export_checkpoint(str(tmp_path / "export"), wait=True)
    assert export.state == trainer_pb2.EXPORT_STATE_DONE and export.step == 2
    verify_manifest(Path(export.destination))

    merged = AutoModelForCausalLM.from_pretrained(export.destination)
    initial = AutoModelForCausalLM.from_pretrained(tmp_path / "store" / "model-tiny-seed0")
    live = dict(merged_named_weights(app.engine.model))
    changed = []
    for name, p in merged.named_parameters():
        torch.testing.assert_close(p, live[name].to(p.dtype), msg=name)
        if not torch.equal(p, dict(initial.named_parameters())[name]):
            changed.append(name)
    assert changed and all("proj" in n for n in changed)  # only adapted projections moved

    adapter = adapter_dir_for(export.destination)
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    loaded = PeftModel.from_pretrained(initial, adapter).merge_and_unload()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-5, rtol=1e-4)


def test_a_step_pushes_merged_weights_into_a_private_rollout_copy(tiny, tiny_dir: Path, serve) -> None:
    from variant_support import PromptRewardScorer, router_for

    from grpo_server.rollout.base import SamplingConfig, make_engine
    from grpo_server.training.engine import OptimConfig
    from grpo_server.training.loop import StepRunner, StepSettings
    from grpo_server.training.loss import LossConfig
    from grpo_server.training.torch_engine import TorchEngine
    from grpo_server.types import ChatMessage, PromptRecord, RewardSpec

    model, tok = tiny
    engine = TorchEngine(apply_lora(model, rank=4, alpha=8), OptimConfig(learning_rate=5e-2))
    rollout = make_engine("hf", model_path=str(tiny_dir), model=None, tokenizer=tok, dtype="float32",
                          device="cpu", seed=0)  # a private copy: weights arrive only through load_weights
    router, snapshot = router_for({"pr": serve(PromptRewardScorer())})
    settings = StepSettings(prompts_per_step=2, group_size=4, sampling=SamplingConfig(n=4, max_new_tokens=6),
                            loss=LossConfig(beta=0.0))
    runner = StepRunner(settings, tokenizer=tok, rollout=rollout, engine=engine, router=router)
    prompts = [PromptRecord(f"q{i}", (ChatMessage("user", f"question {i}"),), (RewardSpec("pr"),)) for i in range(2)]
    runner.run_step(1, prompts, snapshot)
    private = dict(rollout.model.named_parameters())  # type: ignore[attr-defined]
    merged = dict(merged_named_weights(engine.model))
    q = next(n for n in merged if n.endswith("q_proj.weight"))
    assert not torch.equal(merged[q], dict(load_initial(tiny_dir).named_parameters())[q])  # the step moved it
    for name, tensor in merged.items():
        torch.testing.assert_close(private[name], tensor, msg=name)


def load_initial(path: Path) -> torch.nn.Module:
    """The tiny model as built, before any step."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def test_an_export_whose_adapter_directory_is_taken_is_refused_before_it_starts(serve, start_trainer,
                                                                                  tmp_path: Path) -> None:
    """`<destination>-adapter` was not checked: files already there were mixed with the new adapter, and a
    file in its way made the call fail after the merged export had started (and then finished, unseen)."""
    import pytest
    from variant_support import PromptRewardScorer

    from grpo_client.client import TrainerError

    cfg = tiny_config(rollout={"engine": "hf", "max_new_tokens": 6}, algorithm={"lora_rank": 4, "lora_alpha": 8},
                      rewards={"default": [{"backend": "pr"}]})
    app = start_trainer(cfg, tmp_path / "store", [("pr", serve(PromptRewardScorer()))])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    (tmp_path / "a-adapter").mkdir()
    (tmp_path / "a-adapter" / "README.md").write_text("someone else's")
    (tmp_path / "b-adapter").write_text("a file")
    for name in ("a", "b"):
        with pytest.raises(TrainerError) as refused:
            client.export_checkpoint(str(tmp_path / name), wait=True)
        assert refused.value.preconditions == ["DESTINATION_NOT_EMPTY"], refused.value
        assert f"{name}-adapter exists and is not an empty directory" in refused.value.message
        assert not (tmp_path / name).exists()
    assert os.listdir(tmp_path / "a-adapter") == ["README.md"] and client.list_exports().exports == []


def test_two_overlapping_exports_of_one_step_each_get_their_adapter(serve, start_trainer, tmp_path: Path) -> None:
    """Export A waits while its merged weights are written; export B of the same step starts meanwhile.
    Each writes `<destination>-adapter` (one per-step slot let B take A's, and A got none)."""
    from variant_support import PromptRewardScorer

    cfg = tiny_config(rollout={"engine": "hf", "max_new_tokens": 6}, algorithm={"lora_rank": 4, "lora_alpha": 8},
                      rewards={"default": [{"backend": "pr"}]})
    app = start_trainer(cfg, tmp_path / "store", [("pr", serve(PromptRewardScorer()))])
    manager = app.exporter.target
    done: dict[str, Any] = {}
    first = threading.Thread(target=lambda: done.update(a=manager.start(str(tmp_path / "a"), True)))
    first.start()
    deadline = time.monotonic() + 60
    while not manager.manager._jobs:  # A has copied its weights and is writing them
        assert time.monotonic() < deadline, "export A never started"
        time.sleep(0.001)
    done["b"] = manager.start(str(tmp_path / "b"), False)
    first.join(120)
    while manager.get(done["b"].export_id).state not in ("done", "failed"):
        assert time.monotonic() < deadline + 60, "export B never ended"
        time.sleep(0.05)
    for name in ("a", "b"):
        assert manager.get(done[name].export_id).state == "done"
        adapter = adapter_dir_for(tmp_path / name)
        assert (adapter / "adapter_model.safetensors").exists(), f"export {name} has no adapter"
