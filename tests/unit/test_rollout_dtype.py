"""The vLLM engine's dtype choice: bfloat16 on CPU only where the CPU has bfloat16 instructions."""

from __future__ import annotations

import pytest

from grpo_server.rollout.vllm_engine import cpu_flags, resolve_dtype


@pytest.mark.parametrize("flags", [{"avx512f", "avx512_bf16"}, {"avx2", "amx_bf16", "amx_tile"}])
def test_auto_is_bfloat16_on_a_cpu_with_bfloat16_instructions(flags):
    assert resolve_dtype("auto", "cpu", frozenset(flags)) == "bfloat16"


def test_auto_is_float32_on_a_cpu_that_would_emulate_bfloat16():
    assert resolve_dtype("auto", "cpu", frozenset({"avx2", "avx512f", "avx512_vnni"})) == "float32"
    assert resolve_dtype("auto", "cpu", frozenset()) == "float32"


def test_auto_keeps_the_checkpoint_dtype_on_a_gpu_and_explicit_choices_stand():
    assert resolve_dtype("auto", "cuda:0", frozenset()) == "auto"
    assert resolve_dtype("bfloat16", "cpu", frozenset()) == "bfloat16"
    with pytest.raises(ValueError, match="float8"):
        resolve_dtype("float8", "cpu")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()
