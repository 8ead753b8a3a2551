"""Generate the Python stubs (messages, gRPC, mypy type stubs) from protos/ into a directory.

Usage: python tools/genproto.py OUT_DIR

`make proto` writes them to gen/python/; tests/unit/test_generated_code.py generates into a temporary
directory and fails when the committed stubs differ (stale against the .proto files).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGES = ["grpo", "grpo/reward", "grpo/reward/v1", "grpo/trainer", "grpo/trainer/v1"]


def proto_files() -> list[str]:
    """The project's .proto files relative to protos/, sorted (third_party excluded)."""
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "grpo").rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write *_pb2.py, *_pb2_grpc.py and their .pyi stubs for every project proto under out_dir."""
    from grpc_tools import protoc  # dev dependency, imported only when generating

    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "grpo").exists():
        shutil.rmtree(out_dir / "grpo")
    bin_dir = str(Path(sys.executable).parent)  # protoc-gen-mypy lives beside this interpreter
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for pkg in PACKAGES:
        (out_dir / pkg / "__init__.py").touch()
    (out_dir / "grpo" / "py.typed").touch()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    generate(Path(sys.argv[1]))
