"""CPU numerics modes: which kernels training and evaluation run, and so whether their bits depend on the CPU.

``native`` (the default): torch's fastest kernels for this CPU. Convolutions are oneDNN's, JIT-compiled
for the CPU's vector ISA (AVX2, AVX-512, AMX) and blocked for its cache sizes; ATen's kernels are those
built for its vector width; MKL's BLAS dispatches on its vendor and ISA; there is one thread per core.
A run gives the same bits every time on one machine, and other bits on a CPU with another ISA, cache
size or core count.

``portable``: the same bits on every x86-64 CPU with AVX2 (Intel since Haswell, AMD since Zen), whatever
its vendor, vector width, cache sizes and core count. :func:`apply` puts a process in this mode:

* oneDNN bypassed (``torch.backends.mkldnn.enabled = False``, and :func:`dissam.model.optimize_for_inference`
  fuses no oneDNN convolutions): convolutions run as ATen's im2col + GEMM. oneDNN cannot be pinned
  instead: capping its ISA (``ONEDNN_MAX_CPU_ISA``) leaves its convolution blocking chosen from the CPU's
  L1/L2 cache sizes, which no setting fixes;
* ATen's AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``) on every CPU that has AVX2, AVX-512 ones included;
* MKL in conditional numerical reproducibility mode, branch COMPATIBLE (``MKL_CBWR=COMPATIBLE``,
  ``MKL_DYNAMIC=FALSE``): MKL documents only COMPATIBLE (and AUTO, which dispatches by CPU) for non-Intel
  CPUs; asked for another branch (AVX2, AVX512) on an AMD CPU it silently runs AUTO;
* a fixed number of threads, :data:`PORTABLE_THREADS`, instead of one per core: ATen and MKL split
  reductions (batch-norm statistics, GEMMs) by thread, so the thread count changes the bits. Runs that
  already train with one thread (the CPU ablation runs, :mod:`dissam.repro.runs`) keep it.

The ATen and MKL choices are read when the process first runs a kernel, so they must be in the
environment before that: :func:`portable_environment` gives the variables for a child process, and
``dissam reproduce --numerics portable`` (``make reproduce-portable``) sets them before torch is
imported; child processes (notebook kernels, ablation workers) inherit them. :func:`apply` sets them
too, which is enough only in a process that has not computed anything yet, and checks that they took
effect (:class:`NumericsError` otherwise). Setting ``DISSAM_NUMERICS=portable`` selects the mode for
profiles (:func:`dissam.repro.config.get_profile`), whose runs then go to their own folder (``<profile>-portable``).

Cost on the smoke training step (width 0.25, 192 px, batch 8) and what each setting fixes:
docs/numerics.md.
"""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Literal

__all__ = ["ENV_VAR", "MODES", "PORTABLE_THREADS", "NumericsError", "NumericsMode", "apply", "describe",
           "portable_active", "portable_environment", "requested_mode"]

NumericsMode = Literal["native", "portable"]
MODES: tuple[str, ...] = ("native", "portable")
ENV_VAR = "DISSAM_NUMERICS"  # "native" (or unset) | "portable"
PORTABLE_THREADS = 2  # the smoke profile is sized for a 2-core machine; a constant, so bits do not follow cores
ATEN_CAPABILITY = "avx2"  # ATen's kernel build; AVX2 and AVX-512 builds gave the same bits here, "default" others
MKL_BRANCH = "COMPATIBLE"

# mkl_service.h: mkl_cbwr_get(MKL_CBWR_BRANCH) returns the branch; MKL_CBWR_BRANCH_OFF when CNR is off.
_MKL_CBWR_BRANCH, _MKL_CBWR_COMPATIBLE, _MKL_CBWR_SUCCESS = 1, 3, 0

_applied = False  # the thread count is pinned once per process (see apply)


class NumericsError(RuntimeError):
    """Portable numerics were asked for but this process cannot run them (too late, or no AVX2 / MKL)."""


def requested_mode() -> NumericsMode:
    """The mode ``$DISSAM_NUMERICS`` asks for (``native`` when unset)."""
    mode = os.environ.get(ENV_VAR, "").strip().lower() or "native"
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={mode!r}: choose one of {', '.join(MODES)}")
    return mode  # type: ignore[return-value]


def portable_environment() -> dict[str, str]:
    """The variables a process must start with to run in portable mode (read when torch and MKL load).
    The thread count is not among them: torch caps ``OMP_NUM_THREADS`` at the core count, so
    :func:`apply` sets it in the process."""
    return {ENV_VAR: "portable", "ATEN_CPU_CAPABILITY": ATEN_CAPABILITY, "MKL_CBWR": MKL_BRANCH,
            "MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}


@functools.lru_cache(maxsize=1)
def _mkl_cbwr() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    """MKL's ``cbwr_get``/``cbwr_set`` from the MKL torch links (statically, in libtorch_cpu), or None."""
    import torch

    libdir = Path(torch.__file__).parent / "lib"
    for path in [*sorted(libdir.glob("libtorch_cpu.*")), None]:
        try:
            lib = ctypes.CDLL(str(path) if path else None)
        except OSError:
            continue
        for prefix in ("mkl_serv_cbwr", "mkl_cbwr"):
            get, set_ = getattr(lib, f"{prefix}_get", None), getattr(lib, f"{prefix}_set", None)
            if get is not None and set_ is not None:
                return get, set_
    return None


def mkl_branch() -> int | None:
    """MKL's CNR branch in this process (3: COMPATIBLE, 1: CNR off), None when it cannot be read."""
    funcs = _mkl_cbwr()
    return None if funcs is None else int(funcs[0](_MKL_CBWR_BRANCH))


def _ensure_mkl_compatible() -> None:
    import torch

    if not torch.backends.mkl.is_available():
        raise NumericsError("portable numerics need torch's BLAS to be MKL (x86-64 builds); this torch has "
                            "none, so its GEMMs cannot be pinned to one code branch")
    funcs = _mkl_cbwr()
    if funcs is None:  # cannot be read: trust the environment, which must have been there at start-up
        if os.environ.get("MKL_CBWR") != MKL_BRANCH:
            raise NumericsError(f"set MKL_CBWR={MKL_BRANCH} before starting Python (portable_environment())")
        return
    get, set_ = funcs
    if get(_MKL_CBWR_BRANCH) != _MKL_CBWR_COMPATIBLE and set_(_MKL_CBWR_COMPATIBLE) != _MKL_CBWR_SUCCESS:
        raise NumericsError(f"MKL already ran in this process without MKL_CBWR={MKL_BRANCH}: start the process "
                            "with dissam.numerics.portable_environment() in its environment "
                            "(make reproduce-portable, dissam reproduce --numerics portable)")


def apply(mode: str | None = None) -> NumericsMode:
    """Put this process in ``mode`` (default: :func:`requested_mode`) and return it.

    ``native`` changes nothing. ``portable``: sets :func:`portable_environment` in ``os.environ`` (child
    processes inherit it), checks that ATen runs its AVX2 kernels and MKL its COMPATIBLE branch (setting
    the branch if MKL has not run yet), turns oneDNN off, and on its first call in the process sets
    :data:`PORTABLE_THREADS` threads (later calls keep the count, so a caller may run a part with one
    thread). Idempotent. Raises :class:`NumericsError` when the process already ran kernels with other
    settings, or the CPU has no AVX2."""
    global _applied
    mode = requested_mode() if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"numerics mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "native":
        return "native"
    os.environ.update(portable_environment())
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability != ATEN_CAPABILITY.upper():
        raise NumericsError(
            f"ATen runs its {capability} kernels, not {ATEN_CAPABILITY.upper()}: either this CPU has no AVX2 or the "
            f"process ran kernels before ATEN_CPU_CAPABILITY={ATEN_CAPABILITY} was set; start it with "
            "dissam.numerics.portable_environment() (make reproduce-portable, dissam reproduce --numerics portable)")
    _ensure_mkl_compatible()
    torch.backends.mkldnn.enabled = False
    if not _applied:
        torch.set_num_threads(PORTABLE_THREADS)
        _applied = True
    return "portable"


def portable_active() -> bool:
    """Whether this process runs portable numerics (oneDNN off, ATen AVX2, MKL COMPATIBLE)."""
    import torch

    return (not torch.backends.mkldnn.enabled and torch.backends.cpu.get_cpu_capability() == ATEN_CAPABILITY.upper()
            and mkl_branch() in (_MKL_CBWR_COMPATIBLE, None) and os.environ.get("MKL_CBWR") == MKL_BRANCH)


def describe() -> str:
    """One line: the mode in force and what it consists of (for logs and benchmark headers)."""
    import torch

    branch = {_MKL_CBWR_COMPATIBLE: "COMPATIBLE", 1: "off", None: "unknown"}.get(mkl_branch(), "other")
    onednn = "on" if torch.backends.mkldnn.enabled else "off"
    mode = "portable" if portable_active() else "native"
    return (f"numerics {mode}: ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN {onednn}, "
            f"MKL CNR {branch}, {torch.get_num_threads()} threads")
