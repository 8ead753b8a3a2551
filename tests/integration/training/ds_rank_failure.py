"""One rank of the DeepSpeed engine's failure test (launched by torchrun, 2 ranks): rank 0's loss forward
raises (as an out-of-memory of its GPU would: rank 0 also holds the rollout engine and the reference
model), rank 1's runs. Each rank prints one line saying how train_step ended for it, then both leave
the process group together. Before the ranks agreed on such a failure, rank 1 waited in
the pass's agreement and rank 0's close() for ever."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch.distributed as dist  # noqa: E402
from ds_ranks import MICRO_BATCH_ROWS, OPTIM  # noqa: E402
from engine_helpers import fixed_batch, load_tiny, split_rows  # noqa: E402

from grpo_server.training.distributed import finish  # noqa: E402
from grpo_server.training.engine import make_engine  # noqa: E402
from grpo_server.training.loss import LossConfig, global_normalizer, grpo_loss  # noqa: E402


def loss_failing_on_rank_0(model, batch, normalizer):
    if dist.get_rank() == 0:
        raise RuntimeError("out of memory on rank 0 (the test's)")
    return grpo_loss(model, batch, normalizer, cfg=LossConfig(aggregation="dapo", beta=0.0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    args = parser.parse_args()
    engine = make_engine("deepspeed", load_tiny(args.model), OPTIM, zero_stage=2)
    micro = split_rows(fixed_batch(), MICRO_BATCH_ROWS)
    if engine.rank != 0:
        try:
            engine.follow(engine.channel.receive())
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            print(f"rank 1: train_step failed: {type(exc).__name__}: {exc}", flush=True)
    else:
        try:
            engine.train_step(micro, loss_failing_on_rank_0, global_normalizer(micro, "dapo", None))
        except RuntimeError as exc:
            print(f"rank 0: train_step failed: {exc}", flush=True)
    finish()  # both ranks got here: the group is taken down together


if __name__ == "__main__":
    main()
