"""What portable numerics cost: the smoke training step under native and portable numerics, side by side.

    python benchmarks/bench_numerics.py                # 3 rounds, ~5 minutes on 2 cores
    python benchmarks/bench_numerics.py --rounds 5 --steps 8 --passive    # on a CPU shared with other jobs

Each measurement is a fresh process (``python -m dissam.repro.numerics_check``: the settings are read when torch
loads), the two modes alternating round after round so that machine load hits both alike. Two steps are
timed: the main run's (192 px, batch 8, the process's threads: 2 in portable mode) and a CPU ablation
run's (batch 4, one thread). Each line gives the median wall-clock and process-CPU seconds per step and
the portable/native ratios. OpenMP threads wait as in training (spinning) unless ``--passive``: on a CPU
shared with other jobs, spinning threads would time the other jobs, not the kernels, so there use
``--passive`` and read the CPU-time ratio, the steadier one (the wall-clock one includes waiting for a core).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from dissam.cpuinfo import cpu_line

ROOT = Path(__file__).resolve().parent.parent
CLEARED = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_DYNAMIC", "OMP_DYNAMIC",
           "OMP_NUM_THREADS", "MKL_NUM_THREADS", "DISSAM_NUMERICS")
STEPS = {"main run (192 px, batch 8)": ["--size", "192", "--batch", "8"],
         "ablation run (192 px, batch 4, 1 thread)": ["--size", "192", "--batch", "4", "--run-threads", "1"]}


def measure(mode: str, args: list[str], steps: int, passive: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (*CLEARED, "OMP_WAIT_POLICY")}
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "dissam.repro.numerics_check", "--numerics", mode, "--steps", str(steps), *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=6, help="steps per process (the first is not timed)")
    p.add_argument("--passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE (a CPU shared with other jobs)")
    args = p.parse_args()
    print(cpu_line() + ("; OMP_WAIT_POLICY=PASSIVE" if args.passive else ""))
    for name, step_args in STEPS.items():
        runs: dict[str, list[dict]] = {"native": [], "portable": []}
        for _ in range(args.rounds):
            for mode in runs:
                runs[mode].append(measure(mode, step_args, args.steps, args.passive))
        wall = {m: statistics.median(r["step_s"] for r in rs) for m, rs in runs.items()}
        cpu = {m: statistics.median(r["step_cpu_s"] for r in rs) for m, rs in runs.items()}
        print(f"{name}: native {wall['native']:.3f} s wall, {cpu['native']:.3f} s CPU "
              f"({runs['native'][0]['numerics']}); portable {wall['portable']:.3f} s wall, {cpu['portable']:.3f} s CPU "
              f"({runs['portable'][0]['numerics']}); portable/native {wall['portable'] / wall['native']:.2f}x wall, "
              f"{cpu['portable'] / cpu['native']:.2f}x CPU")


if __name__ == "__main__":
    main()
