"""A tokenizer with neither a pad nor an eos token (the model's generation_config names the end token):
the HF rollout engine pads with the generation_config's token, and the step trained on those rollouts
must pad its batches too. It failed every step with int(None) after the rollout."""

from __future__ import annotations

from variant_support import PromptRewardScorer, router_for

from grpo_server.rollout.base import SamplingConfig, make_engine
from grpo_server.training.engine import OptimConfig
from grpo_server.training.loop import StepRunner, StepSettings
from grpo_server.training.loss import LossConfig
from grpo_server.training.torch_engine import TorchEngine
from grpo_server.types import ChatMessage, PromptRecord, RewardSpec


def test_a_step_trains_with_a_tokenizer_without_pad_or_eos(tiny, serve) -> None:
    model, tok = tiny
    end = tok.eos_token_id
    tok.eos_token, tok.pad_token = None, None
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = end, end
    assert (tok.eos_token_id, tok.pad_token_id) == (None, None)
    engine = TorchEngine(model, OptimConfig(learning_rate=1e-3))
    rollout = make_engine("hf", model_path=str(model.name_or_path), model=engine.model, tokenizer=tok,
                          dtype="float32", device="cpu", seed=0)
    assert rollout.pad_token_id == end
    router, snapshot = router_for({"pr": serve(PromptRewardScorer())})
    settings = StepSettings(prompts_per_step=2, group_size=4, sampling=SamplingConfig(n=4, max_new_tokens=8),
                            loss=LossConfig(beta=0.0))
    runner = StepRunner(settings, tokenizer=tok, rollout=rollout, engine=engine, router=router, weights_shared=True)
    prompts = [PromptRecord(f"p{i}", (ChatMessage("user", f"question {i}"),), (RewardSpec("pr"),)) for i in range(2)]
    metrics = runner.run_step(1, prompts, snapshot)
    assert metrics["completions"] == 8 and metrics["grad_norm"] >= 0.0
