"""The data that flows through one training step, in the order it flows.

    PromptRecord ─► RolloutGroup ─► ScoredGroup ─► TrainBatch ─► StepReport

Every other module of the trainer speaks in these names: the store hands out PromptRecords, a rollout
engine turns them into RolloutGroups (G completions each, with the sampler's log-probs), the reward
router turns those into ScoredGroups (a total reward per completion, or a mask where no reward could be
obtained), the step loop collates TrainBatches for the training engine, and the step ends as a
StepReport. They are plain frozen dataclasses: no I/O, no gRPC, no torch state beyond tensors.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

# ---------------------------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class ChatMessage:
    """One chat message: role is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class IOCase:
    """A stdin/stdout test case for a program."""

    stdin: str
    expected_stdout: str


@dataclass(frozen=True)
class CodeReference:
    """Tests a code completion must pass (grpo.reward.v1.CodeTests)."""

    test_code: str = ""
    entry_point: str = ""
    io_cases: tuple[IOCase, ...] = ()
    language: str = "python"
    timeout_seconds: float = 0.0


@dataclass(frozen=True)
class RewardSpec:
    """One reward backend (a registry name) and the weight of its score in the total reward."""

    backend: str
    weight: float = 1.0


@dataclass(frozen=True)
class PromptRecord:
    """A prompt as submitted and stored: what to ask, what a right answer is, and how to reward it.

    At most one of `answer` (math) and `code` (tests) is set; both may be None for backends that need no
    reference (a learned reward model). `rewards` is never empty once stored: the API fills in the
    trainer's default.
    """

    id: str
    messages: tuple[ChatMessage, ...]
    rewards: tuple[RewardSpec, ...]
    answer: str | None = None
    code: CodeReference | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class PromptState(enum.Enum):
    """Where a prompt is in the durable queue (DESIGN.md section 4)."""

    QUEUED = "queued"
    LEASED = "leased"  # taken by a step, not yet in a durable checkpoint
    TRAINED = "trained"  # a durable checkpoint contains its update
    FAILED = "failed"  # given up on (too many failed attempts)
    CANCELLED = "cancelled"  # taken out of the queue (CancelPrompts) before a step leased it


# --------------------------------------------------------------------------------------------- rollouts


@dataclass(frozen=True)
class Completion:
    """One sampled completion of a prompt.

    `token_ids` are the generated tokens (the end-of-sequence token included when generation stopped on
    it); `logprobs[i]` is the sampler's log-probability (nats) of `token_ids[i]` under the rollout
    engine's weights and sampling temperature. `finish_reason` is "stop" (end of sequence or a stop
    string) or "length" (cut off at max_new_tokens).
    """

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: str

    @property
    def truncated(self) -> bool:
        """True when generation was cut off at the length limit."""
        return self.finish_reason == "length"


@dataclass(frozen=True)
class RolloutGroup:
    """G completions of one prompt, sampled together; the group is the unit of GRPO's baseline."""

    prompt: PromptRecord
    prompt_token_ids: tuple[int, ...]
    completions: tuple[Completion, ...]


# ---------------------------------------------------------------------------------------------- rewards


class RewardStatus(enum.Enum):
    """How getting one backend's reward for one completion went (mirrors grpo.reward.v1.ScoreStatus,
    plus the trainer-side failures: the backend unreachable or the call timed out)."""

    OK = "ok"
    INVALID_INPUT = "invalid_input"
    TIMEOUT = "timeout"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"  # trainer side: connection failed, circuit open, retries spent
    DEADLINE_EXCEEDED = "deadline_exceeded"  # trainer side: the Score call ran past its deadline
    # trainer side: the prompt names a backend the step's registry snapshot does not hold (deleted since
    # the prompt was accepted). Not an outage: a step of only such items counts an attempt, so the
    # prompts are given up on after max_attempts instead of blocking the head of the queue for ever.
    UNKNOWN_BACKEND = "unknown_backend"


@dataclass(frozen=True)
class BackendScore:
    """One backend's answer for one completion. `score` is None when no usable score came back."""

    backend: str
    weight: float
    status: RewardStatus
    score: float | None
    feedback: str = ""
    step_scores: tuple[float, ...] = ()
    step_end_offsets: tuple[int, ...] = ()
    components: Mapping[str, float] = field(default_factory=dict)
    message: str = ""
    # True when the backend answered and failed this item itself (its status, such as a sandboxed
    # program's RESOURCE_EXHAUSTED, is about the item); False for the trainer's own failures of the call.
    item_failure: bool = False


@dataclass(frozen=True)
class ScoredCompletion:
    """A completion with its rewards. `reward` is sum(weight * score) over the prompt's backends, or
    None when any backend failed: such a completion is masked out of the loss and counted, never
    scored 0."""

    completion: Completion
    scores: tuple[BackendScore, ...]

    @property
    def reward(self) -> float | None:
        """The total weighted reward, or None when it could not be obtained."""
        total = 0.0
        for s in self.scores:
            if s.score is None or not math.isfinite(s.score):
                return None
            total += s.weight * s.score
        return total

    @property
    def feedback(self) -> str:
        """All backends' feedback, one per line, for SDPO re-prompts and for people."""
        return "\n".join(s.feedback for s in self.scores if s.feedback)


@dataclass(frozen=True)
class ScoredGroup:
    """A rollout group with every completion scored (or masked)."""

    rollout: RolloutGroup
    completions: tuple[ScoredCompletion, ...]

    @property
    def rewards(self) -> list[float | None]:
        """Total reward per completion, None where masked."""
        return [c.reward for c in self.completions]


# -------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainBatch:
    """Tensors for one optimizer step (or one micro-batch of it). N = completions, L = padded length.

    input_ids:        [N, L] long, prompt then completion tokens, right-padded.
    attention_mask:   [N, L] long, 1 on real tokens.
    completion_mask:  [N, L] float, 1 on completion tokens that count in the loss (0 on prompt,
                      padding and masked completions).
    advantages:       [N] (one per sequence) or [N, L] (per token, process supervision), float.
    sampler_logprobs: [N, L] float, the rollout engine's log-probs at completion positions, 0 elsewhere.
    old_logprobs:     [N, L] or None; the policy's log-probs before this step's updates (needed when
                      several inner iterations reuse the rollouts; otherwise the detached current ones).
    ref_logprobs:     [N, L] or None; the frozen reference's log-probs (needed only when beta > 0).
    Log-prob tensors hold, at position t, the log-prob of input_ids[:, t] given the tokens before it.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    advantages: torch.Tensor
    sampler_logprobs: torch.Tensor
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None

    @property
    def num_sequences(self) -> int:
        """N."""
        return int(self.input_ids.shape[0])


class StepState(enum.Enum):
    """A step's lifecycle (grpo.trainer.v1.StepState)."""

    RUNNING = "running"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class StepReport:
    """What a step did. `metrics` uses the field names of grpo.trainer.v1.StepMetrics; names it does not
    have (variants' numbers, per-backend means as "reward/<backend>") go to StepMetrics.extra or
    backend_reward_means when converted."""

    step: int
    state: StepState
    started_at: float  # unix seconds
    finished_at: float | None
    metrics: Mapping[str, float]
    rollout_engine: str
    prompt_ids: tuple[str, ...]
    error: str = ""
    # Of prompt_ids, those DAPO dynamic sampling consumed but left out of the update (equal rewards).
    dropped_prompt_ids: tuple[str, ...] = ()
