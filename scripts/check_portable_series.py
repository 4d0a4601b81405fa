"""The whole notebook series under portable numerics on several emulated CPUs: are the tables the same bytes?

    .venv/bin/python scripts/check_portable_series.py          # the tiny profile on three emulated CPUs

Each emulated machine runs ``dissam reproduce --profile tiny --numerics portable`` in a fresh process with its
own runs folder: what selects other kernels on another CPU is set in its environment (oneDNN's ISA cap,
ATen's kernel build) and its core count is cut with ``taskset`` (one core). Every table and the real-photo
CSV must be byte-identical across the machines; the script prints the files that differ, the time of
each run and the CPU, and exits 1 on a difference. ``tests/test_portable_numerics.py`` checks the same for a
few training steps on every ``make test``; this runs everything from data to tables. (The smoke series writes the committed ``figures/smoke/``, so
three of them would need three clones and some three hours on two cores.)
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dissam.cpuinfo import cpu_line  # noqa: E402

# name: (environment, CPUs to run on or None for all)
MACHINES = {
    "AVX-512, all cores": ({}, None),
    "AVX-512, 1 core": ({}, "0"),
    "AVX2 only, all cores": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, None),
}
CLEARED = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_DYNAMIC",
           "OMP_NUM_THREADS", "MKL_NUM_THREADS", "DISSAM_NUMERICS", "DISSAM_RUNS")
RESULTS = ("table1.csv", "table2.csv", "table3.csv", "table3_seeds.csv", "real_photos.csv")


def run_series(profile: str, machine: str, runs: Path) -> tuple[float, Path]:
    """The series on the emulated ``machine`` into ``runs``; (seconds, the folder of its tables)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(MACHINES[machine][0], DISSAM_RUNS=str(runs))
    cmd = [sys.executable, "-m", "dissam", "reproduce", "--profile", profile, "--numerics", "portable"]
    cpus = MACHINES[machine][1]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{machine}: the series failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    figures = runs / f"{profile}-portable" / "figures"
    return time.perf_counter() - start, figures


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    profile = "tiny"
    tmp = Path(tempfile.mkdtemp(prefix="portable-series-"))
    outputs = {}
    try:
        for machine in MACHINES:
            seconds, figures = run_series(profile, machine, tmp / machine.replace(" ", "_").replace(",", ""))
            outputs[machine] = figures
            print(f"{machine:>22}: {seconds / 60:.1f} min", flush=True)
        first, *others = MACHINES
        differ = [f"{name} ({machine})" for machine in others for name in RESULTS
                  if (outputs[first] / name).exists() != (outputs[machine] / name).exists()
                  or ((outputs[first] / name).exists()
                      and not filecmp.cmp(outputs[first] / name, outputs[machine] / name, shallow=False))]
        present = [name for name in RESULTS if (outputs[first] / name).exists()]
        print(f"compared {', '.join(present)} across {len(MACHINES)} emulated CPUs: "
              + ("identical bytes" if not differ else f"DIFFER: {', '.join(differ)}"))
        print(cpu_line())
        return 1 if differ or not present else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
