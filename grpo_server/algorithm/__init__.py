"""The GRPO algorithm core: pure tensor functions, no I/O, no config objects, no globals.

advantages   group-relative advantages, zero-variance groups, DAPO group filter
kl           the k3 KL estimator
losses       the clipped surrogate + KL, loss aggregations, GSPO ratios
logprobs     chunked per-token log-probs and entropies
process      process-supervision (step reward) advantages
variants     DAPO overlong penalty, truncated importance sampling
sdpo_losses  SDPO distillation losses, EMA teacher
sdpo_prompts SDPO teacher selection and re-prompt
"""

from grpo_server.algorithm.advantages import group_advantages, keep_groups, zero_variance_groups
from grpo_server.algorithm.kl import kl_k3
from grpo_server.algorithm.logprobs import (
    chosen_token_logprobs,
    entropy_from_logits,
    token_logprobs_from_hidden,
)
from grpo_server.algorithm.losses import AGGREGATIONS, aggregate, importance_ratio, policy_loss
from grpo_server.algorithm.process import char_offsets_to_token_ends, process_advantages
from grpo_server.algorithm.sdpo_losses import (
    ema_update,
    generalized_jsd,
    sdpo_is_weights,
    sdpo_logit_kl,
    sdpo_sampled_reverse_kl,
)
from grpo_server.algorithm.sdpo_prompts import (
    DEFAULT_TEACHER_INSTRUCTION,
    TeacherContext,
    build_teacher_messages,
    choose_teacher_context,
)
from grpo_server.algorithm.variants import overlong_penalty, truncated_is_weights

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_TEACHER_INSTRUCTION",
    "TeacherContext",
    "aggregate",
    "build_teacher_messages",
    "char_offsets_to_token_ends",
    "choose_teacher_context",
    "chosen_token_logprobs",
    "ema_update",
    "entropy_from_logits",
    "generalized_jsd",
    "group_advantages",
    "importance_ratio",
    "keep_groups",
    "kl_k3",
    "overlong_penalty",
    "policy_loss",
    "process_advantages",
    "sdpo_is_weights",
    "sdpo_logit_kl",
    "sdpo_sampled_reverse_kl",
    "token_logprobs_from_hidden",
    "truncated_is_weights",
    "zero_variance_groups",
]
