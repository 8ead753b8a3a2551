"""The committed Python stubs under gen/python/ must match what protoc generates from protos/ now."""

from __future__ import annotations

import filecmp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import genproto  # noqa: E402


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    genproto.generate(tmp_path)
    committed = ROOT / "gen" / "python"
    fresh, old = _files(tmp_path / "grpo"), _files(committed / "grpo")
    assert fresh == old, f"stub files differ: run `make proto` (missing {fresh - old}, extra {old - fresh})"
    stale = [f for f in sorted(fresh) if not filecmp.cmp(tmp_path / "grpo" / f, committed / "grpo" / f, shallow=False)]
    assert not stale, f"stale generated code, run `make proto`: {stale}"


def test_every_service_method_has_a_stub() -> None:
    from grpo.reward.v1 import reward_pb2, reward_pb2_grpc
    from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc

    trainer = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]
    reward = reward_pb2.DESCRIPTOR.services_by_name["RewardService"]
    for service, module in ((trainer, trainer_pb2_grpc), (reward, reward_pb2_grpc)):
        servicer = getattr(module, f"{service.name}Servicer")
        for method in service.methods:
            assert hasattr(servicer, method.name), method.full_name
    assert {m.name for m in trainer.methods} >= {
        "SubmitPrompts", "StepStatus", "WatchSteps", "ExportCheckpoint", "PauseTraining", "ResumeTraining",
        "ListRewardBackends", "SetRewardBackend",
    }
    assert {m.name for m in reward.methods} == {"Score", "Describe"}
