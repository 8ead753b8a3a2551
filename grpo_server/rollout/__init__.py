"""Rollout engines: sample G completions per prompt with the sampler's log-probs, and take the trainer's
weights after each optimizer step. `make_engine("vllm" | "hf", ...)` builds one; see base.py for the
interface and docs/rollout.md for the engines' behaviour and measured speed."""

from grpo_server.rollout.base import RolloutEngine, SamplingConfig, make_engine

__all__ = ["RolloutEngine", "SamplingConfig", "make_engine"]
