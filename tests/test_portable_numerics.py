"""Portable numerics (dissam.numerics): a training step gives the same bits on every CPU.

Other CPUs are emulated on this one, each in a fresh process, by what selects different kernels on
them: the vector ISA (``ATEN_CPU_CAPABILITY`` for ATen, ``ONEDNN_MAX_CPU_ISA`` for oneDNN) and the core
count (torch's default thread count is one per core). A few smoke-width refiner steps (dissam.repro.numerics_check: IS-Net
width 0.25, the DIS-SAM loss with its feature and ORTHO terms, fused Adam, channels_last, as
dissam.repro.train runs them) must give identical weights and inference maps in every emulated machine under
portable numerics, and different ones under native numerics: were the emulation to stop selecting other
kernels, the second assertion would fail and the first would prove nothing. What no emulation here can
vary (the vendor, as MKL sees it, and cache sizes, which oneDNN's blocking reads) is covered by the
reference digest: recorded on an AMD Zen 5, checked on whatever CPU runs the suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from dissam import numerics
from dissam.repro.config import REPO_ROOT, get_profile
from dissam.cpuinfo import cpu_flags

# Emulated machines: (environment, default thread count = cores).
MACHINES = {
    "AVX-512, 2 cores": ({}, 2),
    "AVX-512, 1 core": ({}, 1),
    "AVX2 only, 4 cores": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, 4),
}
# Inherited settings that would change what a child process runs.
CLEARED = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_DYNAMIC",
           "OMP_DYNAMIC", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", numerics.ENV_VAR)
STEPS, SIZE, BATCH = 3, 64, 4
# Portable digests recorded with torch 2.14.1+cu130 (MKL 2024.2, oneDNN 3.12) on an AMD EPYC Zen 5.
REFERENCE = {"torch": "2.14.1+cu130", "weights": "69a8e396d85547dd", "maps": "22844391e773c6fa"}


def _machine_env(machine: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(MACHINES[machine][0])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _train(machine: str, mode: str) -> dict:
    """A few training steps (dissam.repro.numerics_check) in a fresh process on the emulated ``machine``."""
    cmd = [sys.executable, "-m", "dissam.repro.numerics_check", "--numerics", mode, "--threads", str(MACHINES[machine][1]),
           "--steps", str(STEPS), "--size", str(SIZE), "--batch", str(BATCH)]
    proc = subprocess.run(cmd, env=_machine_env(machine), capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _portable_supported() -> bool:
    return cpu_flags()["avx2"] and torch.backends.mkl.is_available()


needs_portable = pytest.mark.skipif(not _portable_supported(),
                                    reason="portable numerics need an x86-64 CPU with AVX2 and torch built with MKL")


@pytest.fixture(scope="module")
def digests() -> dict[str, dict[str, dict]]:
    """{mode: {machine: result}} for native and portable numerics on every emulated machine (two processes
    at a time: the bits of a process do not depend on what else runs)."""
    jobs = [(mode, machine) for mode in ("native", "portable") for machine in MACHINES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda job: _train(job[1], job[0]), jobs)))
    return {mode: {machine: results[mode, machine] for machine in MACHINES} for mode in ("native", "portable")}


@needs_portable
def test_portable_training_is_the_same_on_every_emulated_cpu(digests):
    native, portable = digests["native"], digests["portable"]
    # The emulation selects other kernels: today's path gives other weights on each machine.
    assert [r["threads"] for r in native.values()] == [cores for _, cores in MACHINES.values()]
    assert len({r["weights"] for r in native.values()}) == len(MACHINES), native
    # Portable numerics: the same weights and maps everywhere, with one thread count and ATen's AVX2 kernels.
    assert len({r["weights"] for r in portable.values()}) == 1, portable
    assert len({r["maps"] for r in portable.values()}) == 1, portable
    assert {(r["threads"], r["aten"]) for r in portable.values()} == {(numerics.PORTABLE_THREADS, "AVX2")}


@needs_portable
@pytest.mark.skipif(torch.__version__ != REFERENCE["torch"], reason=f"reference recorded with torch {REFERENCE['torch']}")
def test_portable_training_matches_the_reference_cpu(digests):
    """On a CPU other than the one the reference came from, this is the real cross-CPU check."""
    result = next(iter(digests["portable"].values()))
    assert (result["weights"], result["maps"]) == (REFERENCE["weights"], REFERENCE["maps"])


@needs_portable
def test_portable_numerics_refuse_a_process_that_already_computed():
    """ATen and MKL read their settings once, at their first kernel: apply() must not claim a mode it
    cannot deliver."""
    code = ("import torch; from dissam import numerics; torch.randn(64, 64) @ torch.randn(64, 64)\n"
            "try:\n    numerics.apply('portable')\nexcept numerics.NumericsError as e:\n    print('refused:', e)")
    env = _machine_env("AVX-512, 2 cores")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("refused:")


def test_native_is_the_default_and_changes_nothing(monkeypatch):
    monkeypatch.delenv(numerics.ENV_VAR, raising=False)
    enabled = torch.backends.mkldnn.enabled
    assert numerics.requested_mode() == "native" and numerics.apply() == "native"
    assert torch.backends.mkldnn.enabled == enabled
    profile = get_profile("tiny")
    assert (profile.numerics, profile.tag) == ("native", "")


def test_portable_profiles_run_in_their_own_folder(monkeypatch):
    monkeypatch.setenv(numerics.ENV_VAR, "portable")
    profile = get_profile("smoke")
    assert profile.numerics == "portable" and profile.run_dir.name == "smoke-portable"
    assert profile.figures_dir == get_profile("smoke", numerics="native", tag="").figures_dir  # figures/smoke:
    # the committed smoke set is the portable one
    monkeypatch.setenv(numerics.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="DISSAM_NUMERICS"):
        get_profile("smoke")


def test_cli_sets_the_environment_before_torch_loads(monkeypatch):
    from dissam import cli

    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in CLEARED})
    cli.set_numerics_environment("portable")
    assert {k: os.environ[k] for k in numerics.portable_environment()} == numerics.portable_environment()
