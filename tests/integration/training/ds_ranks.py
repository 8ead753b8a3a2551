"""One rank of the DeepSpeed engine test (launched by torchrun or the deepspeed launcher, 2 ranks).

Rank 0 drives: a GRPO step (the trainer's own loss, clipping and KL active) over the 5 micro-batches of
<workdir>/batch.pt (so one rank runs a filler pass), the weights and log-probs after it, save_state, a
second step; then a fresh engine loads the state, repeats the second step and takes a third in which
no completion counts. Everything rank 0 saw goes
to <workdir>/record.pt for the test to compare with the torch engine.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from engine_helpers import load_tiny, split_rows  # noqa: E402

from grpo_server.training.distributed import finish, worker_loop  # noqa: E402
from grpo_server.training.engine import OptimConfig, all_masked_like, make_engine  # noqa: E402
from grpo_server.training.loss import LossConfig, global_normalizer, grpo_loss, logprobs_only  # noqa: E402
from grpo_server.types import TrainBatch  # noqa: E402

OPTIM = OptimConfig(
    learning_rate=1e-2, weight_decay=0.1, eps=1e-4, max_grad_norm=0.5, lr_schedule="linear", total_steps=10
)


LOSS_CONFIG = LossConfig(aggregation="dapo", beta=0.04)
LOSS_FN = functools.partial(grpo_loss, cfg=LOSS_CONFIG)
LOGPROBS = functools.partial(logprobs_only, temperature=1.0)
MICRO_BATCH_ROWS = 2


def build(model_dir: Path, stage: int):
    # Partition every parameter under ZeRO-3 (the tiny model's would all stay whole by default), so
    # the gathers really happen.
    extra = {"zero_optimization": {"stage3_param_persistence_threshold": 0}} if stage == 3 else None
    return make_engine("deepspeed", load_tiny(model_dir), OPTIM, zero_stage=stage, deepspeed_config=extra)


def weights(engine) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in engine.named_weights()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--stage", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--local_rank", type=int, default=0)  # passed by the deepspeed launcher
    args = parser.parse_args()

    engine = build(args.model, args.stage)
    if engine.rank != 0:
        worker_loop(engine)
        resumed = build(args.model, args.stage)
        worker_loop(resumed)
        finish()
        return

    batch = TrainBatch(**torch.load(args.workdir / "batch.pt", weights_only=True))
    micro = split_rows(batch, MICRO_BATCH_ROWS)
    normalizer = global_normalizer(micro, LOSS_CONFIG.aggregation, LOSS_CONFIG.max_tokens)
    record: dict = {"world_size": engine.world_size}
    record["m1"] = engine.train_step(micro, LOSS_FN, normalizer)
    record["w1"] = weights(engine)
    # A consumer that stops after one tensor: the other rank must not be left waiting in a gather.
    partial = engine.named_weights()
    record["first_weight"] = next(partial)[0]
    partial.close()
    record["logprobs"] = engine.forward_logprobs(batch, 1.0, LOGPROBS)
    engine.save_state(args.workdir / "state")
    record["m2"] = engine.train_step(micro, LOSS_FN, normalizer)
    record["w2"] = weights(engine)
    engine.close()

    resumed = build(args.model, args.stage)
    resumed.load_state(args.workdir / "state")
    record["resumed_step"] = resumed.step
    record["m2_resumed"] = resumed.train_step(micro, LOSS_FN, normalizer)
    record["w2_resumed"] = weights(resumed)
    # A step in which no completion counts (every pass ties its loss to the model with weight 0).
    empty = [all_masked_like(mb) for mb in micro]
    record["m3_empty"] = resumed.train_step(empty, LOSS_FN, 1.0)
    record["w3_empty"] = weights(resumed)
    resumed.close()
    torch.save(record, args.workdir / "record.pt")
    finish()


if __name__ == "__main__":
    main()
