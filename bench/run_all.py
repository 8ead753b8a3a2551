"""Every benchmark in one invocation (what `make bench` runs): `python -m bench.run_all`.

Each benchmark runs in its own subprocess (so peak memory is per benchmark), one after another, with
the machine, the date and the load average printed beside it; output goes to the console and to
<out>/<name>.log, results to <out>/<name>.json. The GRPO step comparison runs ours and TRL's
GRPOTrainer back to back in this invocation and prints the ratios. TRL lives only in the bench
environment: the packages of requirements/bench.txt are installed (pip --no-deps) into
.venv/bench-packages, which only the TRL subprocess puts on its path, so torch, transformers and the
trainer's own environment are never changed.

    python -m bench.run_all                      # everything (about an hour on 2 busy cores)
    python -m bench.run_all --only api,step      # some of: api, step, scaling, gpu, rollout, math,
                                                 #   sandbox, reward_model, outage
    python -m bench.run_all --quick              # shorter runs of each

Benchmarks print numbers; nothing here asserts anything about speed. Summaries: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import ROOT, load_average, machine_info

BENCH_PACKAGES = ROOT / ".venv" / "bench-packages"
REQUIREMENTS = ROOT / "requirements" / "bench.txt"
ALL = ("api", "step", "scaling", "gpu", "rollout", "math", "sandbox", "reward_model", "outage")


def ensure_bench_packages() -> None:
    """Install requirements/bench.txt into .venv/bench-packages (--no-deps) unless it is already there."""
    wanted = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    wanted = [w for w in wanted if w]
    marker = BENCH_PACKAGES / ".installed"
    if marker.exists() and marker.read_text().split() == wanted:
        return
    print(f"installing the bench-only packages into {BENCH_PACKAGES}: {' '.join(wanted)}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                    "--target", str(BENCH_PACKAGES), "-r", str(REQUIREMENTS)], check=True)
    marker.write_text("\n".join(wanted) + "\n")


def run_logged(name: str, cmd: list[str], out: Path, env: dict[str, str] | None = None) -> int:
    """Run `cmd` from the repository root, echoing its output and writing it to out/<name>.log."""
    print(f"\n=== {name}: {' '.join(cmd)}  ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC, load "
          f"{load_average()})", flush=True)
    t0 = time.perf_counter()
    with (out / f"{name}.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})})
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if "Warning" not in line and "warnings.warn" not in line:
                print(f"  {line}", end="", flush=True)
        rc = proc.wait()
    print(f"=== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s (load {load_average()})", flush=True)
    return rc


def step_comparison(out: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """Ours and TRL's GRPOTrainer on the same step, back to back; prints and returns the ratios.

    TRL runs twice: with our micro-batch (16 completions per forward and backward, 4 accumulation
    steps: the like-for-like comparison) and with the whole batch of 64 in one pass (no accumulation:
    the simplest way to ask TRL for 8 prompts x 8 samples per optimizer step, and the configuration
    behind the trainer issue's "about 9.5 GB")."""
    py = sys.executable
    common = ["--steps", str(args.steps), *(["--bf16"] if args.bf16 else [])]
    ours_rc = run_logged("step_ours", [py, "-m", "bench.bench_step", *common, "--json", str(out / "step_ours.json")], out)
    if ours_rc:  # nothing to compare TRL with (the model could not be loaded, say): no TRL install or runs
        print(f"our step benchmark failed (exit {ours_rc}); the TRL comparison is skipped", flush=True)
        return None
    try:
        ensure_bench_packages()
    except subprocess.CalledProcessError as exc:
        print(f"could not install TRL for the comparison ({exc}); TRL skipped", flush=True)
        return None
    trl_env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_PACKAGES), os.environ.get("PYTHONPATH")]))}
    trl_runs = {"step_trl": 16, "step_trl_mb64": 64}
    trl_rcs = [
        run_logged(name, [py, "-m", "bench.bench_trl", *common, "--micro-batch", str(mb),
                          "--out-dir", str(out / f"{name}-output"), "--json", str(out / f"{name}.json")],
                   out, env=trl_env)
        for name, mb in trl_runs.items()
    ]
    if ours_rc or trl_rcs[0]:
        return None
    ours = json.loads((out / "step_ours.json").read_text())
    trl = json.loads((out / "step_trl.json").read_text())
    trl64 = json.loads((out / "step_trl_mb64.json").read_text()) if not trl_rcs[1] else None
    ours_s, ours_rss = ours["median_step_seconds_after_first"], ours["peak_rss_bytes_sampled"]
    ratios = {
        "trl_step_seconds": trl["median_step_seconds_after_first"],
        "ours_step_seconds": ours_s,
        "speedup": trl["median_step_seconds_after_first"] / ours_s,
        "trl_peak_rss_gib": trl["peak_rss_bytes_sampled"] / 2**30,
        "ours_peak_rss_gib": ours_rss / 2**30,
        "reward_service_peak_rss_gib": ours["reward_service_peak_rss_bytes"] / 2**30,
        "memory_ratio": ours_rss / trl["peak_rss_bytes_sampled"],
        "ours_rewards": ours["rewards"],
        "trl_rewards": trl["rewards"],
        "ours_phases": ours["median_phases_after_first"],
        "ours_rollout_engine": ours["rollout_engine"],
    }
    if trl64 is not None:
        ratios.update({
            "trl_mb64_step_seconds": trl64["median_step_seconds_after_first"],
            "trl_mb64_peak_rss_gib": trl64["peak_rss_bytes_sampled"] / 2**30,
            "speedup_vs_mb64": trl64["median_step_seconds_after_first"] / ours_s,
            "memory_ratio_vs_mb64": ours_rss / trl64["peak_rss_bytes_sampled"],
            "trl_mb64_rewards": trl64["rewards"],
        })
    print("\nGRPO step, SmolLM2-135M-Instruct, 8 prompts x 8 samples, <= 32 tokens (median after the first step):")
    print(f"  TRL, micro-batch 16  {ratios['trl_step_seconds']:7.1f} s/step  peak RSS {ratios['trl_peak_rss_gib']:.2f} GiB")
    if trl64 is not None:
        print(f"  TRL, micro-batch 64  {ratios['trl_mb64_step_seconds']:7.1f} s/step  peak RSS "
              f"{ratios['trl_mb64_peak_rss_gib']:.2f} GiB")
    print(f"  ours ({ratios['ours_rollout_engine']:4s}), mb 16    {ours_s:7.1f} s/step  peak RSS "
          f"{ratios['ours_peak_rss_gib']:.2f} GiB (+ math verifier {ratios['reward_service_peak_rss_gib']:.2f} GiB)")
    print(f"  against TRL at micro-batch 16: {ratios['speedup']:.2f}x faster at {ratios['memory_ratio']:.2f}x "
          "its peak memory (target: >= 3x faster, <= 0.5x memory)")
    if trl64 is not None:
        print(f"  against TRL at micro-batch 64: {ratios['speedup_vs_mb64']:.2f}x faster at "
              f"{ratios['memory_ratio_vs_mb64']:.2f}x its peak memory")
    print(f"  reward mean per step: ours {[round(r, 3) for r in ratios['ours_rewards']]}, "
          f"TRL {[round(r, 3) for r in ratios['trl_rewards']]}")
    print("  our phases: " + ", ".join(f"{k.replace('_seconds', '')} {v:.2f} s" for k, v in ratios["ours_phases"].items()))
    (out / "step_comparison.json").write_text(json.dumps(ratios, indent=2) + "\n")
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of: {', '.join(ALL)}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps of each side of the comparison")
    parser.add_argument("--bf16", action="store_true",
                        help="the step comparison in bfloat16 mixed precision on both sides (fast only on CPUs "
                        "with bfloat16 instructions)")
    parser.add_argument("--quick", action="store_true", help="shorter runs (fewer steps, seconds, repeats)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default runs/bench/<UTC time>)")
    args = parser.parse_args(argv)
    chosen = [b for b in args.only.split(",") if b and b not in args.skip.split(",")]
    unknown = set(chosen) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    if args.quick:
        args.steps = min(args.steps, 2)
    out = args.out or ROOT / "runs" / "bench" / dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    (out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    print(f"benchmarks {', '.join(chosen)} -> {out}\nmachine: {machine}", flush=True)

    py = sys.executable
    quick = args.quick
    failed: list[str] = []
    for name in chosen:
        if name == "step":
            if step_comparison(out, args) is None:
                failed.append(name)
            continue
        cmd = {
            "api": [py, "-m", "bench.bench_api", "--seconds", "2" if quick else "5", "--json", str(out / "api.json")],
            "scaling": [py, "-m", "bench.bench_scaling", "--repeats", "1" if quick else "2",
                        "--doublings", "1" if quick else "2", "--json", str(out / "scaling.json")],
            "gpu": [py, "-m", "bench.bench_gpu", "--json", str(out / "gpu.json")],
            "rollout": [py, "bench/bench_rollout.py", "--repeats", "1" if quick else "2",
                        "--json", str(out / "rollout.json")],
            "math": [py, "bench/bench_math.py", *(["--items", "128"] if quick else [])],
            "sandbox": [py, "bench/bench_sandbox.py", *(["--runs", "20"] if quick else [])],
            "reward_model": [py, "bench/bench_reward_model.py", "--minilm", "--threads", "1"],
            "outage": [py, "-m", "bench.bench_outage", "--json", str(out / "outage.json")],
        }[name]
        if run_logged(name, cmd, out):
            failed.append(name)
    print(f"\nall done (load {load_average()}); logs and JSON in {out}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
