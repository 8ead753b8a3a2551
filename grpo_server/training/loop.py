"""The step loop: DESIGN.md section 2 as code.

    lease B prompts ─► roll out G each ─► score on the reward backends ─► group advantages
      ─► (old, reference log-probs when needed) ─► clipped surrogate + beta*KL update ─► weight sync
      ─► step record ─► periodic durable checkpoint

`StepRunner.run_step` does one step from leased prompts to a StepReport; `TrainingLoop` repeats it,
honouring pause, drain and max_steps, and makes checkpoints. Everything it touches comes in through its
constructor (store, run control, reward router, engines), so each piece can be tested on its own.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import logging
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grpo_server.algorithm import (
    char_offsets_to_token_ends,
    choose_teacher_context,
    ema_update,
    group_advantages,
    keep_groups,
    overlong_penalty,
    process_advantages,
)
from grpo_server.chat import encode_prompt
from grpo_server.checkpoint import SDPO_TEACHER_FILE, load_module_weights, save_module_weights
from grpo_server.config import RetentionConfig
from grpo_server.control import one_line
from grpo_server.memory import exception_chain, out_of_memory, release
from grpo_server.rollout.base import RolloutEngine, SamplingConfig
from grpo_server.store.records import StoreFull
from grpo_server.training import batch as batching
from grpo_server.training.lora import policy_weights
from grpo_server.training.loss import LossConfig, global_normalizer, grpo_loss, logprobs_only
from grpo_server.training.samples import completion_samples
from grpo_server.training.sdpo import TeacherRows, teacher_rows
from grpo_server.types import (
    PromptRecord,
    RewardStatus,
    RolloutGroup,
    ScoredCompletion,
    ScoredGroup,
    StepReport,
    StepState,
)

log = logging.getLogger(__name__)

# A step whose completions stopped at rollout.max_new_tokens this often or more is warned about
# (_warn_about); each kind of warning comes at most once in WARN_EVERY_STEPS steps.
TRUNCATION_WARN_FRACTION = 0.5
WARN_EVERY_STEPS = 50


@dataclass(frozen=True)
class StepSettings:
    """What one step needs to know, taken from the config."""

    prompts_per_step: int
    group_size: int
    sampling: SamplingConfig
    loss: LossConfig
    advantage_scale: str = "group"
    advantage_eps: float = 1e-6
    inner_iterations: int = 1
    micro_batch_size: int = 16
    mask_truncated: bool = False
    seed: int = 0
    dynamic_sampling: bool = False  # DAPO: drop zero-variance groups, lease more (needs lease_more)
    max_resample_rounds: int = 2
    overlong_cache_tokens: int = 0  # DAPO soft overlong penalty interval (0 = off)
    overlong_penalty_factor: float = 1.0
    process_supervision: bool = False  # token advantages from the backends' step scores
    # extra chat template variables (model.chat_template_kwargs), e.g. enable_thinking
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # tokens of context a rollout has (prompt and completion); a prompt that fills it is not rolled out
    context_tokens: int | None = None
    # positions the model itself has (bounds SDPO teacher sequences, which the rollout engine never sees)
    model_context_tokens: int | None = None


def _weighted_steps(sc: ScoredCompletion) -> list[tuple[int, float]]:
    """(character end offset, weight x step score) of each step every backend scored for `sc`, by end
    offset; none from a result the router masked (it masks step lists it cannot place)."""
    steps: list[tuple[int, float]] = []
    for b in sc.scores:
        if b.score is not None:
            steps += [(end, b.weight * s) for s, end in zip(b.step_scores, b.step_end_offsets, strict=True)]
    steps.sort(key=lambda step: step[0])
    return steps


class _TokenCharEnds(Sequence[int]):
    """token k -> the length in characters of the completion's first k + 1 tokens decoded the way the
    rollout engines decode the text the reward backends score (skip_special_tokens), computed on demand:
    char_offsets_to_token_ends bisects it, so a step end costs O(log C) decodes, not C. A byte-level
    tokenizer may split a character over several tokens; a prefix cut inside one decodes to replacement
    characters (U+FFFD), which are not counted: the character belongs to the token that completes it. The
    whole completion is counted as decoded, since that is the text the backends scored."""

    def __init__(self, tokenizer: Any, ids: Sequence[int]) -> None:
        self._tokenizer, self._ids = tokenizer, list(ids)
        self._cache: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, k: Any) -> Any:  # an index: bisect needs no slices
        if not 0 <= k < len(self._ids):
            raise IndexError(k)
        if k not in self._cache:
            text = self._tokenizer.decode(self._ids[: k + 1], skip_special_tokens=True)
            self._cache[k] = len(text if k == len(self._ids) - 1 else text.rstrip("\ufffd"))
        return self._cache[k]


LeaseMore = Callable[[int, int], Sequence[PromptRecord]]
"""(count, step) -> up to `count` more prompts leased for `step` (empty when the queue is dry)."""


class AllRewardsFailed(RuntimeError):
    """No completion of the step could be scored: no update is taken, the prompts go back.

    `outage`: every failure was the backends' (unreachable, breaker open, deadline, overloaded), not
    the items': the prompts are not to blame, so the attempt does not count against them."""

    def __init__(self, message: str, *, outage: bool = False, metrics: dict[str, float] | None = None,
                 backends: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.outage = outage
        self.metrics = metrics or {}  # what the skipped step did: completions, tokens, masked failures
        self.backends = tuple(backends)  # the backends whose items failed


# Failures that say a backend is down or overloaded, not that an item is bad.
_OUTAGE_STATUSES = frozenset(
    {RewardStatus.UNAVAILABLE, RewardStatus.DEADLINE_EXCEEDED, RewardStatus.TIMEOUT, RewardStatus.RESOURCE_EXHAUSTED}
)


def _is_outage(groups: Sequence[ScoredGroup]) -> bool:
    """True when `groups` have failed reward items and every failure says a backend was down or
    overloaded: a failed call, not an item the backend itself failed (a sandboxed program's
    RESOURCE_EXHAUSTED or TIMEOUT is the program's), so the prompts are not at fault."""
    failed = [s for g in groups for c in g.completions for s in c.scores if s.score is None]
    return bool(failed) and all(not s.item_failure and s.status in _OUTAGE_STATUSES for s in failed)


def first_failure(groups: Sequence[ScoredGroup], limit: int = 300) -> str:
    """The first failed reward item of `groups` in words ("backend 'math': INVALID_INPUT: ..."), for
    the step's error and a given-up prompt's reason."""
    for s in (s for g in groups for c in g.completions for s in c.scores if s.score is None):
        text = f"backend {s.backend!r}: {s.status.name}" + (f": {s.message}" if s.message else "")
        return text if len(text) <= limit else text[: limit - 3] + "..."
    return "none recorded"


def _disk_full(exc: BaseException) -> bool:
    """True when `exc` or what it was raised from says a disk is full: the store's StoreFull, an OSError
    ENOSPC, or a library's error quoting it (safetensors: "No space left on device (os error 28)")."""
    return any(isinstance(e, StoreFull) or getattr(e, "errno", None) == errno.ENOSPC
               or "No space left on device" in str(e) for e in exception_chain(exc))


IDLE_PRUNE_SECONDS = 600.0  # how often a trainer that runs no step applies retention.*


def _age(seconds: float) -> str:
    """A retention period for the log: '7 days', '2 h', '90 s'."""
    if seconds >= 86400:
        return f"{seconds / 86400:g} days"
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def seed_everything(seed: int) -> None:
    """Seed Python, torch (and numpy when present) for one step: a step's randomness depends only on
    (run seed, step number), so a resumed run repeats the step it would have taken."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover
        pass


def _has_reward(group: ScoredGroup) -> bool:
    """True when some completion of `group` got a reward (a group with none goes back to the queue)."""
    return any(r is not None for r in group.rewards)


class StepRunner:
    """Runs one step on leased prompts: GRPO, or its variants as `settings` select them (DAPO dynamic
    sampling and overlong penalty, GSPO, truncated IS, SDPO; LoRA is seen through the engine's model).
    Not thread-safe: one step at a time.

    lease_more: how dynamic sampling gets more prompts for the step being run (the loop's store lease);
    without it dynamic sampling only drops groups. The SDPO teacher for `loss.sdpo.teacher` "initial" or
    "ema" is a frozen copy of the engine's model made here, at construction; "ema" then follows the
    student after every optimizer step. It is training state: `save_state` writes it into a checkpoint
    and `load_state` restores it on resume (the initial weights stay the run's first ones, the EMA its
    average so far).
    """

    def __init__(
        self,
        settings: StepSettings,
        *,
        tokenizer: Any,
        rollout: RolloutEngine,
        engine: Any,
        router: Any,
        ref_model: torch.nn.Module | None = None,
        weights_shared: bool = False,
        lease_more: LeaseMore | None = None,
    ) -> None:
        self.s = settings
        self.tokenizer = tokenizer
        self.rollout = rollout
        self.engine = engine
        self.router = router
        self.ref_model = ref_model
        self.weights_shared = weights_shared  # the rollout engine runs the trainer's own module
        self.lease_more = lease_more
        if settings.loss.beta > 0 and ref_model is None:
            raise ValueError("beta > 0 needs a reference model")
        sdpo = settings.loss.sdpo
        self.teacher: torch.nn.Module | None = None
        self.last_teacher_rows: TeacherRows | None = None
        # Every prompt the current (or last) step consumed, in lease order: its own lease, then dynamic
        # sampling's extra leases. Filled as prompts are leased, so it is right even when the step fails.
        self.step_prompt_ids: tuple[str, ...] = ()
        # The prompts of the current (or last) step none of whose completions got a reward, each with True
        # when every failure was an outage and its first failure: they took no update, so the loop puts
        # them back in the queue.
        self.step_unscored: tuple[tuple[str, bool, str], ...] = ()
        # The prompts of the current (or last) step whose groups dynamic sampling left out of the update.
        self.step_dropped: tuple[str, ...] = ()
        # The prompts of the current (or last) step that could not be rolled out, with why (_unrollable).
        self.step_unrolled: tuple[tuple[str, str], ...] = ()
        # Dynamic sampling's extra prompts naming a backend the step's registry snapshot lacks (submitted
        # after a backend was added during the step), with why: back to the queue, no attempt counted.
        self.step_deferred: tuple[tuple[str, str], ...] = ()
        # Every group the current (or last) step sampled and scored, for the completions it keeps (samples.py).
        self.step_groups: Sequence[ScoredGroup] = ()
        # True from the moment the current step starts changing the weights (its first backward pass):
        # a step that fails after this may leave them partly updated. Set back to False when its training
        # pass failed before any optimizer step began (_untouched).
        self.update_started = False
        # What the current (or last) step is doing: "rollout" (sampling and scoring), "training pass"
        # (log-probabilities and the update), "weight sync" (the new weights into the rollout engine).
        self.phase = ""
        # Sequences per forward and backward pass: training.micro_batch_size until a training pass runs out
        # of memory before its optimizer step, then half as many (and again, down to 1) for the rest of the
        # process's life (_retry_smaller).
        self.micro_batch_size = settings.micro_batch_size
        if sdpo is not None and sdpo.teacher in ("initial", "ema"):
            self.teacher = build_reference_model(engine.model)

    def memory_advice(self) -> str:
        """What to change when the current step ran out of memory, for its phase, with the settings' values."""
        s = self.s
        n = s.sampling.max_new_tokens
        if self.phase == "rollout":
            if getattr(self.rollout, "max_batch_sequences", None) == s.group_size:  # the HF engine, halved to 1 prompt
                return (f"out of memory during the rollout generating one prompt's {s.group_size} completions at once "
                        f"(halved on running out from algorithm.prompts_per_step {s.prompts_per_step} prompts): lower "
                        f"algorithm.group_size ({s.group_size}) or rollout.max_new_tokens ({n}), or give the trainer "
                        "more memory")
            text = (f"out of memory during the rollout: generate fewer sequences at once (algorithm.prompts_per_step "
                    f"{s.prompts_per_step} x algorithm.group_size {s.group_size} = {s.prompts_per_step * s.group_size}) "
                    f"or shorter ones (rollout.max_new_tokens {n})")
            if self.rollout.name == "vllm":
                text += "; rollout.vllm_gpu_memory_utilization is the share of the GPU vLLM takes, the rest is training's"
            return text
        if self.phase == "training pass":
            if getattr(self.engine, "optimizer_stepping", False):
                return ("out of memory in the optimizer step (AdamW keeps two fp32 numbers for every weight it trains): "
                        "train a LoRA adapter instead of every weight (algorithm.lora_rank), or shard the optimizer over "
                        "GPUs (training.engine deepspeed)")
            checkpointing = bool(getattr(self.engine.model, "is_gradient_checkpointing", False))
            shorter = f"shorten the completions (rollout.max_new_tokens {n})"
            if self.micro_batch_size == 1:
                return ("out of memory during the training pass with micro-batches of 1 sequence"
                        + (f" (training.micro_batch_size {s.micro_batch_size}, halved on running out)"
                           if s.micro_batch_size > 1 else "") + ": "
                        + ("" if checkpointing else "set training.gradient_checkpointing: true, ")
                        + shorter + ", or give the trainer more memory")
            halved = (f", halved to {self.micro_batch_size} on running out" if self.micro_batch_size < s.micro_batch_size
                      else "")
            return (f"out of memory during the training pass: lower training.micro_batch_size ({s.micro_batch_size} "
                    f"sequences a forward and backward pass{halved})"
                    + ("" if checkpointing else ", set training.gradient_checkpointing: true")
                    + f", or {shorter}")
        if self.phase == "weight sync":
            return ("out of memory loading the new weights into the rollout engine: with rollout.engine vllm, lower "
                    "rollout.vllm_gpu_memory_utilization")
        return "out of memory"

    # ------------------------------------------------------------------------------------ state

    def save_state(self, directory: Path) -> None:
        """Write the runner's own training state into the checkpoint `directory`: the SDPO teacher
        (`sdpo_teacher.safetensors`) when the run keeps one ("initial" or "ema"); nothing otherwise."""
        if self.teacher is not None:
            save_module_weights(self.teacher, directory, SDPO_TEACHER_FILE)

    def load_state(self, directory: Path) -> None:
        """Restore what `save_state` wrote, after the engine has loaded the same checkpoint. A checkpoint
        without a teacher (written before teachers were saved, or by a run without one) re-initialises
        the teacher from the engine's (resumed) policy, and says so in the log."""
        if self.teacher is None:
            return
        if load_module_weights(self.teacher, directory, SDPO_TEACHER_FILE):
            log.info("SDPO teacher restored from %s", directory)
            return
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.engine.model.parameters(), strict=True):
                t.copy_(s)
        kind = self.s.loss.sdpo.teacher if self.s.loss.sdpo is not None else "?"
        log.warning("checkpoint %s holds no SDPO teacher (%s): the %r teacher starts again from the resumed "
                    "policy's weights", directory, SDPO_TEACHER_FILE, kind)

    # ------------------------------------------------------------------------------------ pieces

    def encode_messages(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Chat messages -> prompt token ids ready for the assistant's turn (grpo_server.chat)."""
        return encode_prompt(self.tokenizer, messages, self.s.chat_template_kwargs)

    def prompt_token_ids(self, prompt: PromptRecord) -> list[int]:
        """The chat-templated prompt, ready for the assistant's turn."""
        return self.encode_messages([{"role": m.role, "content": m.content} for m in prompt.messages])

    def rollout_groups(self, prompts: Sequence[PromptRecord]) -> list[RolloutGroup]:
        """G completions per prompt from the rollout engine. A prompt that cannot be rolled out gets no
        group and is added to `step_unrolled` with the reason (`_unrollable`)."""
        token_ids: list[list[int]] = []
        kept: list[PromptRecord] = []
        for p in prompts:
            ids, why = self._unrollable(p)
            if why is not None:
                log.warning("prompt %r not rolled out: %s", p.id, why)
                self.step_unrolled += ((p.id, why),)
                continue
            kept.append(p)
            token_ids.append(ids)
        if not kept:
            return []
        completions = self.rollout.generate(token_ids, self.s.sampling)
        return [
            RolloutGroup(prompt=p, prompt_token_ids=tuple(ids), completions=tuple(c))
            for p, ids, c in zip(kept, token_ids, completions, strict=True)
        ]

    def _unrollable(self, prompt: PromptRecord) -> tuple[list[int], str | None]:
        """(the prompt's token ids, None), or ([], why it cannot be rolled out). The API refuses both kinds,
        but a stored prompt may predate a change of config: the chat template (model.chat_template) now
        rejects its messages, or it leaves no room for a whole completion (rollout.max_new_tokens) in a
        context made smaller or after a longer max_new_tokens. Either
        would end the step (vLLM refuses a prompt longer than its context) and, requeued at its place,
        every run after a restart."""
        try:
            ids = self.prompt_token_ids(prompt)
        except Exception as exc:  # noqa: BLE001 - the template's own error (jinja2's, a raise_exception call)
            return [], f"the model's chat template rejects the prompt's messages: {exc}"
        context = self.s.context_tokens
        completion = self.s.sampling.max_new_tokens
        if context is not None and len(ids) + completion > context:
            # The API's rule (PromptRoom): HF generate ran past the model's positions (an IndexError that
            # ended the step, or completions the model was never trained to place).
            return [], (f"the prompt is {len(ids)} tokens and its completions take up to {completion} "
                        f"(rollout.max_new_tokens): no room for a completion in the context of {context}; "
                        f"at most {context - completion} prompt tokens fit")
        return ids, None

    def shaped_rewards(self, scored: Sequence[ScoredGroup]) -> tuple[torch.Tensor, torch.Tensor]:
        """(rewards [N] with NaN where masked, valid [N] bool): the total reward plus, when configured,
        DAPO's soft overlong penalty times overlong_penalty_factor."""
        flat = [r for g in scored for r in g.rewards]
        valid = torch.tensor([r is not None for r in flat], dtype=torch.bool)
        rewards = torch.tensor([r if r is not None else float("nan") for r in flat], dtype=torch.float32)
        if self.s.overlong_cache_tokens > 0:
            lengths = torch.tensor([len(c.completion.token_ids) for g in scored for c in g.completions])
            penalty = overlong_penalty(lengths, self.s.sampling.max_new_tokens, self.s.overlong_cache_tokens)
            rewards = rewards + self.s.overlong_penalty_factor * penalty
        return rewards, valid

    def advantages(self, scored: Sequence[ScoredGroup]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(advantages [N], or [N, C] per completion token with process supervision; rewards [N] with NaN
        where masked; valid [N] bool)."""
        rewards, valid = self.shaped_rewards(scored)
        if self.s.process_supervision:
            return self.process_token_advantages(scored, valid), rewards, valid
        adv = group_advantages(
            torch.nan_to_num(rewards, nan=0.0),
            self.s.group_size,
            scale=self.s.advantage_scale,
            eps=self.s.advantage_eps,
            valid=valid,
        )
        return adv, rewards, valid

    def process_token_advantages(self, scored: Sequence[ScoredGroup], valid: torch.Tensor) -> torch.Tensor:
        """[N, C] token advantages from the backends' step scores (C = the longest completion): each
        completion's steps are those of every backend that returned step scores, its step reward weight x
        step score, in the order of their end offsets; a masked completion has none (see
        algorithm.process_advantages for the normalisation)."""
        step_rewards: list[list[float]] = []
        step_ends: list[list[int]] = []
        width = 1
        completions = (c for g in scored for c in g.completions)
        for sc, ok in zip(completions, valid.tolist(), strict=True):
            ids = sc.completion.token_ids
            width = max(width, len(ids))
            steps = _weighted_steps(sc) if ok else []
            ends = char_offsets_to_token_ends([e for e, _ in steps], _TokenCharEnds(self.tokenizer, ids)) if steps else []
            step_rewards.append([r for _, r in steps])
            step_ends.append(ends)
        return process_advantages(step_rewards, step_ends, width, self.s.group_size, eps=self.s.advantage_eps)

    def groups_with_variance(self, scored: Sequence[ScoredGroup],
                             shaped: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[bool]:
        """Per group: True when what its advantages come from differs (DAPO's keep rule): its (shaped,
        valid) rewards, or with process supervision the step rewards of its valid completions (outcome
        scores do not enter those advantages, so a group of equal outcomes but different steps has a
        signal, and one of different outcomes but equal steps has none). With mask_truncated_completions,
        a group none of whose valid completions carries a loss token (all cut at max_new_tokens, or
        empty) has nothing to learn either: kept, it took a place in the step and trained nothing.
        `shaped`: shaped_rewards(scored) when the caller has it already."""
        if not scored:
            return []
        rewards, valid = shaped if shaped is not None else self.shaped_rewards(scored)
        if self.s.process_supervision:
            flags = iter(valid.tolist())
            keep = []
            for g in scored:
                values = [r for sc in g.completions if next(flags) for _, r in _weighted_steps(sc)]
                keep.append(len(values) >= 2 and any(v != values[0] for v in values))  # process_advantages' rule
        else:
            keep = keep_groups(torch.nan_to_num(rewards, nan=0.0), self.s.group_size, valid=valid).tolist()
        if self.s.mask_truncated:  # batch.collate's rule for the rows that carry a loss
            flags = iter(valid.tolist())
            carries = [[bool(next(flags)) and bool(c.completion.token_ids) and not c.completion.truncated
                        for c in g.completions] for g in scored]
            keep = [k and any(rows) for k, rows in zip(keep, carries, strict=True)]
        return keep

    def groups_with_signal(self, scored: Sequence[ScoredGroup]) -> list[bool]:
        """Per group: True when the update can learn from it, what dynamic sampling keeps. GRPO's
        surrogate learns from a group whose rewards differ (groups_with_variance); SDPO's distillation
        from a group with a completion that gets a teacher (feedback, or a successful sibling) and can
        carry a loss. A group of failures with the reward services' feedback is SDPO's case: it has no
        variance but a teacher for each completion. With `name: sdpo` (no surrogate) only the teacher
        counts."""
        sdpo = self.s.loss.sdpo
        if sdpo is None or sdpo.weight <= 0 or not scored:
            return self.groups_with_variance(scored)
        rewards, valid = self.shaped_rewards(scored)
        keep = (self.groups_with_variance(scored, (rewards, valid)) if self.s.loss.grpo_weight > 0
                else [False] * len(scored))
        completions = [c for g in scored for c in g.completions]
        contexts = choose_teacher_context(
            [float(r) if ok else None for r, ok in zip(rewards.tolist(), valid.tolist(), strict=True)],
            [c.feedback for c in completions], sdpo.success_threshold, group_size=self.s.group_size,
            use_feedback=sdpo.use_feedback, use_siblings=sdpo.use_siblings,
            identities=[tuple(c.completion.token_ids) for c in completions],  # as teacher_rows: a copy is no sibling
        )
        # teacher_rows finds rows again by prompt and completion tokens: a row identical to one without a
        # teacher (a flaky reward scored the same text a success and a failure) is not distilled either.
        keys = [(tuple(scored[i // self.s.group_size].rollout.prompt_token_ids), tuple(c.completion.token_ids))
                for i, c in enumerate(completions)]
        undistilled = {key for key, ctx in zip(keys, contexts, strict=True) if not ctx.distilled}
        for i, (ctx, c, key) in enumerate(zip(contexts, completions, keys, strict=True)):
            done = c.completion
            if (ctx.distilled and key not in undistilled and done.token_ids
                    and not (self.s.mask_truncated and done.truncated)):
                keep[i // self.s.group_size] = True  # the rows teacher_rows distils (batch.collate's keep)
        return keep

    def sample(self, step: int, prompts: Sequence[PromptRecord], registry_snapshot: Any,
               timings: dict[str, float]) -> tuple[list[ScoredGroup], list[ScoredGroup], dict[str, float]]:
        """Roll out and score `prompts`; with dynamic sampling, drop zero-variance groups and lease, roll
        out and score more prompts (at most max_resample_rounds rounds) until prompts_per_step groups
        have variance. Returns (groups to train on, every group sampled, dynamic-sampling metrics)."""
        self.step_deferred = ()
        t0 = time.monotonic()
        groups = self.rollout_groups(prompts)
        timings["rollout_seconds"] = time.monotonic() - t0
        t0 = time.monotonic()
        scored = list(self.router.score(groups, registry_snapshot))
        timings["reward_seconds"] = time.monotonic() - t0
        if not self.s.dynamic_sampling:
            return scored, scored, {}
        everything = list(scored)
        kept = [g for g, k in zip(scored, self.groups_with_signal(scored), strict=True) if k]
        rounds = 0
        while len(kept) < self.s.prompts_per_step and rounds < self.s.max_resample_rounds and self.lease_more:
            more = list(self.lease_more(self.s.prompts_per_step - len(kept), step))
            if not more:
                break
            self.step_prompt_ids += tuple(p.id for p in more)
            rounds += 1
            more = self._defer_unknown_backends(more, registry_snapshot)
            t0 = time.monotonic()
            extra_groups = self.rollout_groups(more)
            timings["rollout_seconds"] += time.monotonic() - t0
            t0 = time.monotonic()
            extra = list(self.router.score(extra_groups, registry_snapshot))
            timings["reward_seconds"] += time.monotonic() - t0
            everything += extra
            kept += [g for g, k in zip(extra, self.groups_with_signal(extra), strict=True) if k]
        kept_ids = {g.rollout.prompt.id for g in kept}  # a step leases each id at most once
        if kept:  # with no group kept the step trains on every group (below), so none is dropped
            self.step_dropped = tuple(g.rollout.prompt.id for g in everything if g.rollout.prompt.id not in kept_ids)
        metrics = {
            "dapo/kept_groups": float(len(kept)),
            # with no group kept every group is trained (below): none was dropped; a group with no reward at
            # all goes back to the queue (run_one), neither dropped nor trained
            "dapo/dropped_groups": float(sum(1 for g in everything if g.rollout.prompt.id not in kept_ids
                                             and _has_reward(g))) if kept else 0.0,
            "dapo/resample_rounds": float(rounds),
        }
        # Nothing with variance: train on what was sampled (zero advantages; only KL/SDPO terms move).
        return (kept if kept else everything), everything, metrics

    def _defer_unknown_backends(self, prompts: list[PromptRecord], snapshot: Any) -> list[PromptRecord]:
        """`prompts` without those naming a backend `snapshot` lacks, which go to `step_deferred`. The API
        accepted them against the registry as it is now: a backend added after the step took its snapshot.
        Scored with the step's snapshot they would fail UNKNOWN_BACKEND, an attempt counted against a
        valid prompt; the next step, with a newer snapshot, scores them."""
        entries = getattr(snapshot, "entries", None)
        if entries is None:  # a router that takes no registry snapshot (tests' local reward functions)
            return prompts
        keep = []
        for p in prompts:
            missing = sorted({r.backend for r in p.rewards if r.backend not in entries})
            if missing:
                why = (f"names reward backend {', '.join(map(repr, missing))}, not in the step's registry (version "
                       f"{snapshot.version}; added since the step began, or deleted): left for the next step")
                log.info("prompt %r %s", p.id, why)
                self.step_deferred += ((p.id, why),)
            else:
                keep.append(p)
        return keep

    # ------------------------------------------------------------------------------------ a step

    def run_step(self, step: int, prompts: Sequence[PromptRecord], registry_snapshot: Any) -> dict[str, float]:
        """Roll out, score, update. Returns the step's metrics; raises AllRewardsFailed when nothing
        could be scored (no update taken). `step_prompt_ids` lists every prompt the step consumed."""
        self.step_prompt_ids = tuple(p.id for p in prompts)
        self.update_started = False
        self.phase = "rollout"
        self.step_unscored = ()
        self.step_dropped = ()
        self.step_unrolled = ()
        self.step_groups = ()
        # Each phase's seconds and the out-of-memory retries, as they are measured: also the metrics of
        # the step's report when it fails part-way (how far it got, how often it retried).
        timings: dict[str, float] = {}
        self.step_so_far = timings
        seed_everything(self.s.seed * 1_000_003 + step)
        rollout_retries = getattr(self.rollout, "oom_retries", 0)  # the HF engine's, halving its batches
        try:
            scored, sampled, extra_metrics = self.sample(step, prompts, registry_snapshot, timings)
        finally:
            timings["oom_retries/rollout"] = float(getattr(self.rollout, "oom_retries", 0) - rollout_retries)
        self.step_groups = sampled
        # Prompts that could not be rolled out count as unscored ones: back to the queue, an attempt
        # counted, failed for good after training.max_prompt_attempts, and the step goes on with the others.
        # Each with its own reason (and, for the scored ones, whether all of its failures were an outage):
        # also when the whole step is skipped, no prompt is failed for another one's cause.
        unrolled: tuple[tuple[str, str], ...] = self.step_unrolled
        self.step_unscored = tuple((pid, False, why) for pid, why in unrolled) + tuple(
            (g.rollout.prompt.id, _is_outage([g]), f"no completion got a reward ({first_failure([g])})")
            for g in sampled if not _has_reward(g)
        ) + tuple((pid, True, why) for pid, why in self.step_deferred)  # True: as an outage, no attempt counted
        if not sampled:
            why = unrolled[0][1] if unrolled else "no prompt"
            raise AllRewardsFailed(f"no prompt of the step could be rolled out ({why})",
                                   metrics={"prompts": 0.0, "completions": 0.0, **timings})

        adv, rewards, valid = self.advantages(scored)
        if not bool(valid.any()):
            raise AllRewardsFailed(
                f"no reward could be obtained for any of the {len(rewards)} completions "
                f"(first failure: {first_failure(scored)})", outage=_is_outage(scored),
                backends=tuple(dict.fromkeys(s.backend for g in scored for c in g.completions for s in c.scores
                                             if s.score is None)),
                metrics={"prompts": float(len(scored)), "completions": float(len(rewards)),
                         "masked_reward_failures": float(len(rewards)),
                         "generated_tokens": float(sum(len(c.completion.token_ids) for g in sampled
                                                       for c in g.completions)),
                         **timings},
            )

        full = batching.collate(
            scored, adv, pad_token_id=self._pad_id(), mask_truncated=self.s.mask_truncated
        )
        loss_kwargs: dict[str, Any] = {"cfg": self.s.loss}
        sdpo = self.s.loss.sdpo
        if sdpo is not None and sdpo.weight > 0:
            flat_rewards = [None if not ok else float(r) for r, ok in zip(rewards.tolist(), valid.tolist(), strict=True)]
            keep = (full.completion_mask.sum(dim=1) > 0).tolist()
            rows, sdpo_metrics = teacher_rows(
                scored, flat_rewards, sdpo, self.s.group_size, self.encode_messages, keep=keep,
                context=self.s.model_context_tokens,
            )
            extra_metrics.update(sdpo_metrics)
            self.last_teacher_rows = rows  # for inspection (tests, debugging); replaced every step
            loss_kwargs.update(teacher_rows=rows, teacher=self.teacher, pad_id=self._pad_id())

        self.phase = "training pass"
        retries = 0
        while True:
            steps_before = getattr(self.engine, "step", None)
            try:
                train_metrics = self._training_pass(full, loss_kwargs, timings)
                break
            except Exception as exc:
                at_once = min(self.micro_batch_size, full.num_sequences)  # the failed pass's micro-batch
                untouched = self._untouched(steps_before)
                timings.update({"oom_retries/training": float(retries), "micro_batch_size": float(at_once)})
                if not (untouched and out_of_memory(exc) and at_once > 1):
                    if untouched:  # the weights in memory are still the last step's: exports stay possible
                        self.update_started = False
                    raise
                failure = f"{type(exc).__name__}: {exc}"
            # Out of the handler: the failed pass's tensors went with its traceback.
            self._retry_smaller(step, failure, at_once)
            retries += 1
        timings.update({"micro_batch_size": float(self.micro_batch_size), "oom_retries/training": float(retries)})

        self.phase = "weight sync"
        t0 = time.monotonic()
        if not self.weights_shared:
            self.rollout.load_weights(policy_weights(self.engine.model, self.engine.named_weights()))
        timings["weight_sync_seconds"] = time.monotonic() - t0
        self.phase = ""

        # Reward metrics describe the policy: every group sampled, task rewards before any shaping.
        task, task_valid = self._task_rewards(sampled)
        rollout_metrics = self._rollout_metrics(sampled, task, task_valid)
        if self.s.dynamic_sampling:  # the prompts trained: not those with no reward at all (requeued)
            rollout_metrics["dapo/trained_prompts"] = float(sum(map(_has_reward, scored)))
        if self.s.overlong_cache_tokens > 0:
            shaped = self.shaped_rewards(sampled)[0]
            ok = task_valid
            rollout_metrics["overlong/penalty_mean"] = float((shaped[ok] - task[ok]).mean()) if bool(ok.any()) else 0.0
        return {**rollout_metrics, **extra_metrics, **train_metrics, **timings}

    def _training_pass(self, full: Any, loss_kwargs: dict[str, Any], timings: dict[str, float]) -> dict[str, float]:
        """The step's log-probabilities (reference, old) and its update(s), in micro-batches of
        `self.micro_batch_size` sequences; returns the engine's train metrics (timings go into `timings`)."""
        micro = batching.split(full, self.micro_batch_size)
        t0 = time.monotonic()
        compute = functools.partial(logprobs_only, temperature=self.s.loss.temperature)
        if self.s.loss.beta > 0:
            assert self.ref_model is not None
            with torch.no_grad():
                micro = [batching.with_logprobs(mb, ref=compute(self.ref_model, mb)) for mb in micro]
        if self.s.inner_iterations > 1:
            micro = [batching.with_logprobs(mb, old=self.engine.forward_logprobs(mb, self.s.loss.temperature, compute)) for mb in micro]
        timings["logprob_seconds"] = time.monotonic() - t0

        normalizer = global_normalizer(micro, self.s.loss.aggregation, self.s.loss.max_tokens)
        loss_fn = functools.partial(grpo_loss, **loss_kwargs)
        sdpo = self.s.loss.sdpo
        t0 = time.monotonic()
        train_metrics: dict[str, float] = {}
        optimizer_seconds = 0.0
        self.update_started = True
        for _ in range(self.s.inner_iterations):
            # The loss, grad norm and learning rate reported are the last iteration's; the optimizer's time
            # is every iteration's (only the last one's was, the rest booked as backward).
            train_metrics = self.engine.train_step(micro, loss_fn, normalizer)
            optimizer_seconds += float(train_metrics.pop("optimizer_seconds", 0.0))
            if sdpo is not None and sdpo.teacher == "ema" and self.teacher is not None:
                ema_update(self.teacher.parameters(), self.engine.model.parameters(), sdpo.ema_rate)
        train_seconds = time.monotonic() - t0
        timings["optimizer_seconds"] = optimizer_seconds
        timings["backward_seconds"] = max(train_seconds - timings["optimizer_seconds"], 0.0)
        return train_metrics

    def _untouched(self, steps_before: int | None) -> bool:
        """True when a training pass that failed left the weights and the optimizer as it found them: no
        optimizer step began. Only an engine that says when its optimizer is stepping (the torch engine's
        `optimizer_stepping`) can tell; DeepSpeed keeps its own accumulation count and ranks, so a failed
        pass of its counts as touched (not run again, the weights not exported)."""
        return (getattr(self.engine, "optimizer_stepping", None) is False and steps_before is not None
                and self.engine.step == steps_before)

    def _retry_smaller(self, step: int, failure: str, was: int) -> None:
        """Halve the micro-batch size `was` of the failed pass for this pass and the rest of the process's
        life, release what the failed pass held, and say so."""
        self.micro_batch_size = was // 2
        self.engine.model.zero_grad(set_to_none=True)
        release()
        log.warning("step %d: out of memory in the training pass with micro-batches of %d sequences (%s); running "
                    "it again with %d. The trainer keeps %d until it restarts: set training.micro_batch_size to "
                    "%d (now %d) to start there", step, was, failure[:300], self.micro_batch_size,
                    self.micro_batch_size, self.micro_batch_size, self.s.micro_batch_size)

    # ------------------------------------------------------------------------------------ helpers

    def _task_rewards(self, scored: Sequence[ScoredGroup]) -> tuple[torch.Tensor, torch.Tensor]:
        flat = [r for g in scored for r in g.rewards]
        valid = torch.tensor([r is not None for r in flat], dtype=torch.bool)
        return torch.tensor([r if r is not None else float("nan") for r in flat], dtype=torch.float32), valid

    def _pad_id(self) -> int:
        """The id that pads the training batches (any id would do: padding is masked): the tokenizer's pad
        or eos token, else what the rollout engine pads with (a tokenizer with neither: the model's
        generation_config names it)."""
        for pad in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, getattr(self.rollout, "pad_token_id", None)):
            if pad is not None:
                return int(pad)
        return 0

    def _rollout_metrics(
        self, scored: Sequence[ScoredGroup], rewards: torch.Tensor, valid: torch.Tensor
    ) -> dict[str, float]:
        lengths = [len(c.completion.token_ids) for g in scored for c in g.completions]
        truncated = [c.completion.truncated for g in scored for c in g.completions]
        ok = rewards[valid]
        m: dict[str, float] = {
            "reward_mean": float(ok.mean()),
            "reward_std": float(ok.std(unbiased=False)) if ok.numel() > 1 else 0.0,
            "completion_length_mean": sum(lengths) / len(lengths),
            "completion_length_min": float(min(lengths)),
            "completion_length_max": float(max(lengths)),
            "truncated_fraction": sum(truncated) / len(truncated),
            # what the advantages come from: the shaped rewards (the overlong penalty may tell a group of
            # equal task rewards apart), or with process supervision the step rewards
            "zero_variance_groups": float(self.groups_with_variance(scored).count(False)),
            "masked_reward_failures": float((~valid).sum()),
            "prompts": float(len(scored)),
            "completions": float(len(lengths)),
            "generated_tokens": float(sum(lengths)),
        }
        per_backend: dict[str, list[float]] = {}
        for g in scored:
            for c in g.completions:
                for s in c.scores:
                    if s.score is not None and math.isfinite(s.score):
                        per_backend.setdefault(s.backend, []).append(s.score)
        for name, values in per_backend.items():
            m[f"reward/{name}"] = sum(values) / len(values)
        return m


def build_reference_model(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of the initial policy, for the KL penalty."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class TrainingLoop:
    """Repeats steps while there are prompts, honouring pause, drain and max_steps; checkpoints every
    `checkpoint_every` steps. Runs on its own thread (`start`), stops with `stop`."""

    def __init__(
        self,
        runner: StepRunner,
        *,
        store: Any,
        control: Any,
        registry: Any,
        metrics: Any,
        save_checkpoint: Callable[[int], Path],
        checkpoint_every: int,
        checkpoint_committed: Callable[[int], None] | None = None,
        max_steps: int = 0,
        partial_step_after_seconds: float = 0.0,
        engine_name: str = "hf",
        poll_seconds: float = 0.5,
        samples_per_step: int = 0,
        samples_keep_steps: int = 1000,
        retention: RetentionConfig | None = None,
    ) -> None:
        self.runner = runner
        self.store = store
        self.control = control
        self.registry = registry
        self.metrics = metrics
        self.save_checkpoint = save_checkpoint
        # Called once the store records a checkpoint: the one it replaces may go now (checkpoint.keep).
        self.checkpoint_committed = checkpoint_committed
        self.checkpoint_every = checkpoint_every
        self.max_steps = max_steps  # optimizer steps (completed steps); skipped steps do not count
        # Train a tail shorter than a batch once nothing has been submitted for this long (0: never).
        self.partial_after = partial_step_after_seconds if partial_step_after_seconds > 0 else None
        self.engine_name = engine_name
        self.poll_seconds = poll_seconds
        self.samples_per_step = samples_per_step  # completions kept with each step's report (samples.py)
        self.samples_keep_steps = samples_keep_steps
        self.retention = retention  # what the store forgets, and when (prune_store); None: nothing
        # A trainer that is idle, paused or finished writes no checkpoint, so it also prunes this long after
        # the last pruning: a finished prompt's content is not kept for weeks past its retention because
        # no step followed.
        self.idle_prune_seconds = IDLE_PRUNE_SECONDS
        self._next_prune = 0.0  # time.monotonic() of the next pruning while no step runs
        self._warned: dict[str, int] = {}  # kind -> the step of its last warning (_warn_about)
        self.step_lock = threading.Lock()  # held during an update; exports copy weights under it
        self._stop = threading.Event()
        # Set when the drain gave up waiting for the current step: the store and engines are closed
        # under it, so the error it then meets is expected and records nothing (see abandon).
        self._abandoned = False
        self._thread: threading.Thread | None = None
        latest = store.latest_checkpoint()
        self.checkpoint_step = latest.step if latest else 0
        if latest is not None:  # the engine resumed from it already; the runner's own state comes too
            runner.load_state(Path(latest.path))
        # Steps after the checkpoint were lost with the process (store.recover re-queued their prompts):
        # numbering resumes from the checkpoint, so step N always means the state after the first N steps
        # (skipped ones among them took no update: `updates` counts those that did).
        self.step = self.checkpoint_step
        self.updates = store.completed_steps(self.checkpoint_step)  # optimizer steps taken so far
        self._completed_since_checkpoint = 0  # steps that took an update and are not yet in a checkpoint
        # Set when a step failed after its update began: the weights in memory may hold part of that
        # update, so they are not exported (the last checkpoint holds a consistent state).
        self.weights_error = ""
        self.outage_backoff_seconds = 1.0  # wait after a step skipped because the reward backends were down

    # ----------------------------------------------------------------------------------- control

    def start(self) -> None:
        """Run the loop on a background thread."""
        self._thread = threading.Thread(target=self._run_guarded, name="training-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop after the current step, then wait for it."""
        self._stop.set()
        self.control.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def abandon(self) -> None:
        """The drain stops without waiting any longer for the current step: its thread will fail on the
        closed store (nothing recorded; the restart re-queues its prompts), which is then logged as
        expected instead of as a failed run."""
        self._abandoned = True

    @property
    def alive(self) -> bool:
        """True while the loop thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------------------------- loop

    def _run_guarded(self) -> None:
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - the run fails visibly rather than the thread dying quietly
            if self._abandoned:
                log.info("the step left behind by the drain ended: %s: %s", type(exc).__name__, exc)
                return
            log.exception("training loop failed")
            self.control.fail(self._failure(exc))
            self.metrics.set_run_state("failed")

    def _failure(self, exc: BaseException) -> str:
        """The error a failed step and run report: the exception, and for a full disk or exhausted memory
        what to change before the restart that resumes the run."""
        text = one_line(f"{type(exc).__name__}: {exc}")
        resume = ("restart the trainer; it resumes from "
                  + (f"the checkpoint of step {self.checkpoint_step}" if self.checkpoint_step else "the start")
                  + " and no submitted prompt is lost")
        if _disk_full(exc):
            return f"{text} (a disk is full: make room on the volume that holds {self.store.store_dir}, or grow it, then {resume})"
        if out_of_memory(exc):
            advice = getattr(self.runner, "memory_advice", lambda: "out of memory")()
            return f"{text} ({advice}; then {resume})"
        return text

    def run(self) -> None:
        """The loop body; returns when stopped or finished."""
        self.prune_store()
        while not self._stop.is_set():
            if time.monotonic() >= self._next_prune:
                self.prune_store()  # no checkpoint pruned for idle_prune_seconds: idle, paused or finished
            # Finished before paused: a pause asked for during the last step found the run PAUSED with no
            # checkpoint of its last steps.
            if self.max_steps and self.updates >= self.max_steps:
                # Finished: the last steps become durable now (their prompts TRAINED), not at a drain.
                self.checkpoint_if_behind()
                self._set_state("finished")
                self._stop.wait(self.poll_seconds)
                continue
            if self.control.pause_requested:
                self._set_state("paused")
                self.control.wait_while_paused(timeout=self.poll_seconds)
                continue
            step = self.step + 1
            prompts = self.store.lease(self.runner.s.prompts_per_step, step, partial_after=self.partial_after)
            depth = self.store.queue_depth()
            self.metrics.queue_depth.set(depth)
            if not prompts:
                self._set_state("idle")
                self.control.set_waiting(*self._short_batch(depth))
                self.control.wait_for_work(timeout=self.poll_seconds)
                continue
            self._set_state("training")
            self.run_one(step, prompts)
        self.checkpoint_if_behind()

    def _short_batch(self, depth: int) -> tuple[str, float]:
        """Why a queue of `depth` prompts starts no step, for control.set_waiting: the reason, and when a
        step on the prompts there are is due (time.monotonic(); 0 when none is). ("", 0) for an empty
        queue: that says it all."""
        if depth <= 0:
            return "", 0.0
        n = self.runner.s.prompts_per_step
        more = (f"{depth} queued prompt{'s' if depth > 1 else ''} of the {n} a step takes: the next step starts "
                f"when {n - depth} more {'are' if n - depth > 1 else 'is'} submitted")
        latest = self.store.last_submitted_at() if self.partial_after else None  # no read when it cannot matter
        if latest is None:
            return f"{more} (training.partial_step_after_seconds is 0: a step waits for a full batch)", 0.0
        due = time.monotonic() + max(latest + self.partial_after - time.time(), 0.0)
        return f"{more}, or on the prompts there are if none is submitted", due

    def run_one(self, step: int, prompts: Sequence[PromptRecord]) -> StepReport:
        """One step from leased prompts to a recorded report (and a checkpoint when due).

        The RUNNING report lists the step's own lease; the final report lists every prompt the step
        consumed, dynamic sampling's extra leases (and the prompts of groups it dropped) included: all of
        them are leased by this step, so its checkpoint marks them trained (or a skip re-queues them)."""
        started = time.time()
        ids = tuple(p.id for p in prompts)
        running = StepReport(step, StepState.RUNNING, started, None, {}, self.runner.rollout.name, ids)
        self.store.record_step(running)
        self.control.notify_step(running)
        snapshot = self.registry.snapshot()
        outage = False
        failed_backends: tuple[str, ...] = ()
        crashed: Exception | None = None
        try:
            # What an export reads (the weights, `step`, `weights_error`) changes only under the lock, so
            # that it never copies one step's weights under another's number, nor a half-applied update.
            # The store writes below let an export waiting for the lock run, hence everything it reads is
            # set before the lock is released.
            with self.step_lock:
                try:
                    metrics = self.runner.run_step(step, prompts, snapshot)
                except AllRewardsFailed:
                    raise  # no update was made
                except Exception as exc:
                    self._mark_weights_unsafe(step, exc)
                    raise
                finally:
                    ids = self.runner.step_prompt_ids or ids
                self.step = step
                self.updates += 1
                self._completed_since_checkpoint += 1
            metrics["step_seconds"] = time.time() - started
            metrics["tokens_per_second"] = metrics["generated_tokens"] / max(metrics["rollout_seconds"], 1e-9)
            ids = self._requeue_unscored(step, ids)
            trained = set(ids)
            dropped = tuple(i for i in getattr(self.runner, "step_dropped", ()) if i in trained)
            report = StepReport(step, StepState.COMPLETED, started, time.time(), metrics, self.runner.rollout.name, ids,
                                dropped_prompt_ids=dropped)
        except AllRewardsFailed as exc:
            log.warning("step %d skipped: %s", step, exc)
            # A backend outage must not use up the prompts' attempts (a few quick skipped steps while a
            # breaker is open would otherwise fail every queued prompt for good), and the loop waits a
            # little before trying again rather than spinning through rollouts.
            outage = exc.outage
            failed_backends = exc.backends
            # Each prompt with its own cause: one that could not be rolled out counts its attempt even
            # when the others waited out an outage, and none is failed for another prompt's reason.
            self._requeue_each(step, getattr(self.runner, "step_unscored", ()))
            failed = self.store.requeue_step(step, count_attempt=not outage, reason=str(exc))  # any left
            if failed:  # prompts that used up their attempts are FAILED now (the store's only such move)
                self.metrics.prompts_failed.inc(failed)
            metrics = {**exc.metrics, "step_seconds": time.time() - started}
            report = StepReport(step, StepState.SKIPPED, started, time.time(), metrics, self.runner.rollout.name, ids,
                                str(exc))
            self.step = step
        except Exception as exc:
            # Anything else (a bug, memory, a full disk) ends the run (_run_guarded, re-raised below), but
            # first the step is FAILED with the error where StepStatus and WatchSteps show it, and its
            # prompts go back to the queue at their positions, no attempt counted: the cause may not be
            # theirs, and a restart resumes from the last checkpoint without this step's partial update.
            self.store.requeue_step(step, count_attempt=False)
            metrics = {**getattr(self.runner, "step_so_far", {}), "step_seconds": time.time() - started}
            report = StepReport(step, StepState.FAILED, started, time.time(), metrics, self.runner.rollout.name, ids,
                                self._failure(exc))
            crashed = exc
        samples = completion_samples(getattr(self.runner, "step_groups", ()), self.samples_per_step)
        self.store.record_step(report, samples=samples, keep_sample_steps=self.samples_keep_steps)
        try:
            if report.state is StepState.COMPLETED:
                log.info(
                    "step %d: reward %.3f±%.3f kl %.4f loss %.4f %.1fs",
                    step, report.metrics.get("reward_mean", float("nan")),
                    report.metrics.get("reward_std", float("nan")), report.metrics.get("kl", 0.0),
                    report.metrics.get("loss", float("nan")), report.metrics["step_seconds"],
                )
                self._warn_about(report)
                if self._completed_since_checkpoint >= self.checkpoint_every:
                    # every checkpoint.every_steps completed steps (skipped ones took no update and do not
                    # count: counted by step number, a skipped step on a multiple left completed ones out
                    # of any checkpoint); before watchers hear of the step: they see its checkpoint too
                    self.checkpoint(step)
        finally:
            # The report is stored: watchers and the metrics hear of it even when its checkpoint failed
            # (a full disk), which then ends the run. A skipped or failed step put prompts back: the gauge
            # set at its lease would say 0 while they wait.
            with contextlib.suppress(sqlite3.Error):
                self.metrics.queue_depth.set(self.store.queue_depth())
            self.metrics.observe_step(report)
            self.control.notify_step(report)
        if crashed is not None:
            raise crashed
        if report.state is StepState.SKIPPED and outage:
            self._wait_after_outage(failed_backends)
        return report

    def _mark_weights_unsafe(self, step: int, exc: Exception) -> None:
        """Refuse exports from now on when `step` failed after its update began (call under the step lock:
        an export waiting for it must see this before it copies the weights)."""
        if getattr(self.runner, "update_started", True):
            self.weights_error = (
                f"step {step} failed during its update ({type(exc).__name__}: {exc}), so the weights in "
                f"memory may hold part of it; the latest durable checkpoint is step {self.checkpoint_step}: "
                "restart the trainer to resume from it, then export"
            )

    def _warn_about(self, report: StepReport) -> None:
        """Warn about what a completed step's means hide, each kind again only every WARN_EVERY_STEPS steps
        while it lasts (not at every step):

        - half or more of the completions stopped at rollout.max_new_tokens: their rewards judge cut text
          (an answer never reached scores 0; a top complaint about TRL is silent truncation by a small
          default);
        - every group's completions got one reward: the policy loss is 0 (the "loss is 0" confusion
          TRL's users report), only the KL term (if any) moves the weights; not said when SDPO distilled
          some of them (a group of failures with feedback is what SDPO learns from)."""
        m = report.metrics
        warnings = {}
        fraction = m.get("truncated_fraction", 0.0)
        if fraction >= TRUNCATION_WARN_FRACTION:
            warnings["truncated"] = (
                f"{100 * fraction:.0f}% of the completions stopped at rollout.max_new_tokens "
                f"({self.runner.s.sampling.max_new_tokens} tokens) before they ended, and were scored cut; raise "
                "rollout.max_new_tokens or ask for shorter answers")
        # Groups with no reward at all (requeued) are no groups of one reward: left out of both counts.
        unscored = sum(not _has_reward(g) for g in getattr(self.runner, "step_groups", ()))
        groups = m.get("prompts", 0.0) - unscored
        # With SDPO, flat groups that got teachers (failures with feedback) are what it learns from: no warning.
        if (groups > 0 and m.get("zero_variance_groups", 0.0) - unscored >= groups
                and not m.get("sdpo/distilled_fraction", 0.0)):
            moved = ("only the KL term moved the weights" if self.runner.s.loss.beta > 0
                     else "nothing moved the weights (algorithm.beta is 0: no KL term)")
            warnings["no_signal"] = (
                f"{'the one group' if groups == 1 else f'every one of the {groups:.0f} groups'} got one reward for "
                f"all its completions{f' ({unscored} more got no reward at all)' if unscored else ''}, so no completion "
                f"was better than another: the policy loss is 0 and {moved}; the "
                "prompts are too easy or too hard for the policy, or a backend gives everything one score "
                "(grpo status --samples shows the completions)")
        for kind, text in warnings.items():
            last = self._warned.get(kind)
            if last is None or report.step - last >= WARN_EVERY_STEPS:
                self._warned[kind] = report.step
                log.warning("step %d: %s (said again every %d steps while it lasts)", report.step, text,
                            WARN_EVERY_STEPS)

    def _wait_after_outage(self, backends: Sequence[str]) -> None:
        """After a step skipped because its reward backends were down: wait a little (and for their
        breakers' trial call, _wait_for_breakers) before the next step rather than spin through rollouts.
        Meanwhile the run is IDLE, and RunStatus.waiting_for names the backends and the wait."""
        named = (f"reward backend{'s' if len(backends) > 1 else ''} {', '.join(map(repr, backends))} "
                 f"{'are' if len(backends) > 1 else 'is'} down") if backends else "the reward backends are down"
        self._set_state("idle")
        try:
            self.control.set_waiting(f"{named}: the next step starts", time.monotonic() + self.outage_backoff_seconds)
            self._stop.wait(self.outage_backoff_seconds)
            self._wait_for_breakers(backends, named)
        finally:
            self.control.set_waiting("")

    def _wait_for_breakers(self, backends: Sequence[str], named: str) -> None:
        """After a step skipped for an outage: while the breakers of all its failed backends are open,
        every call to them fails fast, so the next step would roll out only to be skipped again (one
        wasted rollout and one skipped step a second for the whole reset time). Wait for the first
        trial call instead, in short slices: a stop, a pause or a registry change (a backend moved to a
        new address gets a fresh breaker) ends the wait."""
        seconds_until_trial = getattr(getattr(self.runner, "router", None), "seconds_until_trial", None)
        if seconds_until_trial is None or not backends:
            return
        left = seconds_until_trial(backends, self.registry.snapshot())
        if left <= 0:
            return
        log.info("%s (circuit open): the next step waits %.1f s for the breaker's trial call rather than "
                 "rolling out only to be skipped", named, left)
        while left > 0 and not self._stop.is_set() and not self.control.pause_requested:
            self.control.set_waiting(f"{named} (circuit open): the next step waits for the trial call",
                                     time.monotonic() + left)
            self._stop.wait(min(left, 0.5))
            left = seconds_until_trial(backends, self.registry.snapshot())

    def _requeue_unscored(self, step: int, ids: tuple[str, ...]) -> tuple[str, ...]:
        """Put the prompts of a completed step that no completion was scored for back in the queue (they
        took no update; counted as an attempt unless every failure was an outage, as for a skipped step)
        and return the ids that were trained."""
        unscored = getattr(self.runner, "step_unscored", ())
        if not unscored:
            return ids
        self._requeue_each(step, unscored)
        log.info("step %d: %d prompts got no reward for any completion and went back to the queue",
                 step, len(unscored))
        back = {pid for pid, _, _ in unscored}
        return tuple(i for i in ids if i not in back)

    def _requeue_each(self, step: int, unscored: Sequence[tuple[str, bool, str]]) -> None:
        """Put the prompts of `step` in `unscored` ((id, outage, reason)) back in the queue: an outage's
        without an attempt counted, the others with one and their own reason."""
        outages = [pid for pid, outage, _ in unscored if outage]
        if outages:
            self.store.requeue_step(step, count_attempt=False, ids=outages)
        for pid, outage, why in unscored:
            if not outage:
                failed = self.store.requeue_step(step, count_attempt=True, ids=[pid], reason=why)
                if failed:
                    self.metrics.prompts_failed.inc(failed)

    def checkpoint(self, step: int) -> None:
        """Make the state after `step` durable and mark its prompts trained."""
        started = time.monotonic()
        path = self.save_checkpoint(step)  # the engine's and the runner's state (the SDPO teacher), durable
        before = self.store.counts()
        self.store.commit_checkpoint(step, str(path))
        after = self.store.counts()
        self.checkpoint_step = step
        self._completed_since_checkpoint = 0
        if self.checkpoint_committed is not None:
            self.checkpoint_committed(step)
        trained = [v for k, v in after.items() if k.value == "trained"]
        trained_before = [v for k, v in before.items() if k.value == "trained"]
        self.metrics.prompts_trained.inc(max((trained[0] if trained else 0) - (trained_before[0] if trained_before else 0), 0))
        self.metrics.checkpoints.labels(kind="training").inc()
        self.metrics.checkpoint_duration.labels(kind="training").observe(time.monotonic() - started)
        log.info("checkpoint at step %d: %s", step, path)
        self.prune_store()

    def prune_store(self) -> None:
        """Forget what retention.* says the run no longer needs: finished prompts' content or whole rows,
        old request ids, old step reports. Runs at the loop's start, after each checkpoint and when
        idle_prune_seconds passed without either: the store grows by what a run keeps, not by every prompt
        it ever trained."""
        r = self.retention
        self._next_prune = time.monotonic() + self.idle_prune_seconds
        if r is None:
            return
        cutoffs = r.cutoffs(time.time())
        if all(v is None for v in cutoffs.values()):
            return
        try:
            done = self.store.prune(**cutoffs)
        except sqlite3.Error as exc:  # housekeeping: the step and its checkpoint are recorded already
            log.warning("store: pruning under retention.* failed (%s); it is tried again at the next checkpoint",
                        exc)
            return
        parts = []
        for kind, n, what in (
            ("prompt_rows", done.prompt_rows,
             f"the rows of {done.prompt_rows} prompts that finished over {_age(r.prompt_rows_seconds)} ago"),
            ("prompt_content", done.prompt_contents,
             f"the content of {done.prompt_contents} prompts that finished over {_age(r.prompt_content_seconds)} ago"),
            ("request_ids", done.request_ids,
             f"{done.request_ids} request ids older than {_age(r.request_ids_seconds)}"),
            ("step_reports", done.step_reports,
             f"the reports of {done.step_reports} steps that finished over {_age(r.step_reports_seconds)} ago"),
            ("export_records", done.export_records,
             f"the records of {done.export_records} exports that finished over {_age(r.export_records_seconds)} ago"),
        ):
            self.metrics.store_pruned.labels(kind=kind).inc(n)
            if n:
                parts.append(what)
        if parts:
            log.info("store: dropped %s (retention.*)", ", ".join(parts))

    def checkpoint_if_behind(self) -> None:
        """On a clean stop: checkpoint the last completed step if the latest checkpoint is older."""
        if self._completed_since_checkpoint:
            self.checkpoint(self.step)

    def _set_state(self, state: str) -> None:
        self.control.set_state(state)
        # What the control kept: a draining or failed run ignores the loop's idle/training/paused.
        self.metrics.set_run_state(self.control.state.value)
