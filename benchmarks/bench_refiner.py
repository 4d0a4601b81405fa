"""Refiner speed on this CPU: eager fp32 vs the optimised inference path, and the smoke training step.

Measured side by side in one run (repeats interleaved, medians), so machine load hits both alike:
  * forward latency of the full-width 5-channel refiner at 256, 512 and 1024 px: eager ``model(x)``
    vs ``predict_prob(optimize_for_inference(model), x)``, with the max abs difference of the maps;
  * (information) the opt-in bf16 path, fast on AMX CPUs but only within ~1e-2;
  * the same at the largest size after ``retain_freed_memory()`` (glibc keeps freed memory);
  * at 512 and 1024 px, ONNX Runtime (the ``dissam export`` graph on the CPU provider, default session
    options and N threads that sleep when idle) beside eager and the optimised path, same max-diff check.
    On a CPU shared with other jobs run with ``OMP_WAIT_POLICY=PASSIVE``: PyTorch's OpenMP threads
    otherwise spin at every barrier and, with the cores oversubscribed, the optimised path ran 10-20x
    slower here (2.8 s instead of 0.14 s at width 0.5, 256^2), which would credit ONNX Runtime with it;
  * the smoke training step (width 0.25, 192 px, batch 8): forward + GT encoder + dis_sam_loss
    (BCE, IoU, feature MSE, ORTHO) + backward + Adam, in the default layout, in channels_last (as trained
    before) and with fused Adam (as trained now), each as a share of this CPU's measured fp32 limit.
Run: ``python benchmarks/bench_refiner.py`` (2-3 minutes on 2 cores before the ONNX Runtime part was added; all
of it took 8.7 minutes with other jobs loading the cores).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dissam.cpuinfo import cpu_line
from dissam.losses import dis_sam_loss
from dissam.model import build_gt_encoder, build_refiner
from dissam.model.inference import optimize_for_inference, predict_prob, retain_freed_memory
from dissam.model.path_choice import TIE_MARGIN, choose_inference_path


def with_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking BatchNorm statistics, so the comparison exercises BN folding for real."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(cands: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """One warm-up each, then ``repeats`` rounds alternating the candidates; median seconds."""
    for fn in cands.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(repeats):
        for k, fn in cands.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_inference(sizes: list[int], repeats: dict[int, int], retained_size: int | None = 1024) -> bool:
    torch.manual_seed(0)
    model = with_bn_stats(build_refiner(in_ch=5, width=1.0)).eval()
    fast = optimize_for_inference(model)
    folded = optimize_for_inference(model, channels_last=False)  # BN folding alone
    bf16 = optimize_for_inference(model, dtype=torch.bfloat16)  # opt-in, not within 1e-4
    ok = True
    print(f"refiner width 1.0, 5 ch, batch 1, fp32, {torch.get_num_threads()} threads; "
          f"optimised = BN folded + channels_last + prepacked oneDNN conv+ReLU, maps[0] only")
    print(f"{'size':>6} {'eager s':>9} {'optimised s':>12} {'speed-up':>9} {'max|diff|':>10} "
          f"{'(fold only)':>12} {'(bf16 opt-in, max|diff|)':>26} {'reps':>5}")
    for size in sizes:
        x = torch.rand(1, 5, size, size) - 0.5

        def eager() -> torch.Tensor:
            with torch.inference_mode():
                return model(x)[0][0]

        med = interleaved({"eager": eager, "fast": lambda: predict_prob(fast, x),
                           "fold": lambda: predict_prob(folded, x), "bf16": lambda: predict_prob(bf16, x)},
                          repeats[size])
        ref = eager()
        diff = max((predict_prob(m, x) - ref).abs().max().item() for m in (fast, folded))
        ok &= diff <= 1e-4
        bf_diff = (predict_prob(bf16, x) - ref).abs().max().item()
        print(f"{size:>5}^2 {med['eager']:9.3f} {med['fast']:12.3f} {med['eager'] / med['fast']:8.2f}x "
              f"{diff:10.2e} {med['eager'] / med['fold']:11.2f}x {med['eager'] / med['bf16']:14.2f}x, {bf_diff:8.1e} "
              f"{repeats[size]:>5}")
    print("max abs diff <= 1e-4:", "OK" if ok else "FAILED")
    if retained_size and retain_freed_memory():  # process-wide from here on: run it last
        x = torch.rand(1, 5, retained_size, retained_size) - 0.5
        med = interleaved({"eager": lambda: predict_prob(model, x), "fast": lambda: predict_prob(fast, x)},
                          repeats.get(retained_size, 3))
        print(f"after retain_freed_memory() (no page zeroing per forward), {retained_size}^2: eager maps[0] "
              f"{med['eager']:.3f} s, optimised {med['fast']:.3f} s ({med['eager'] / med['fast']:.2f}x)")
    return ok


def onnx_sessions(model: nn.Module, threads: int) -> tuple[dict[str, Callable[[object], object]], float]:
    """The refiner exported to ONNX (in memory) and run by ONNX Runtime's CPU provider, two ways:
    default session options (all graph optimisations; one thread per physical core, spinning) and
    ``threads`` intra-op threads that sleep when idle (spinning=False), which measured best here on a
    shared CPU. Returns {name: run(x) -> prob} and the export's seconds."""
    from dissam.model.onnx_export import INPUT, OUTPUT, load_session, onnx_bytes

    start = time.perf_counter()
    data = onnx_bytes(model)
    seconds = time.perf_counter() - start
    sessions = {"ORT default": load_session(data),
                f"ORT {threads} thr, no spin": load_session(data, threads=threads, spinning=False)}
    return {name: (lambda x, s=s: s.run([OUTPUT], {INPUT: x})[0]) for name, s in sessions.items()}, seconds


def bench_onnxruntime(sizes: list[int], repeats: dict[int, int], threads: int) -> bool:
    """Eager vs the optimised PyTorch path vs ONNX Runtime (``dissam export`` / ``backend="onnxruntime"``),
    full-width refiner, batch 1, interleaved repeats, medians; ratios are eager's time over each."""
    if not sizes:
        return True
    torch.manual_seed(0)
    model = with_bn_stats(build_refiner(in_ch=5, width=1.0)).eval()
    try:
        ort_runs, export_s = onnx_sessions(model, threads)
    except ImportError as err:
        print(f"ONNX Runtime: skipped ({err})")
        return True
    fast = optimize_for_inference(model)
    print(f"ONNX Runtime vs PyTorch: refiner width 1.0, 5 ch, batch 1, fp32, torch {torch.get_num_threads()} "
          f"threads (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}); export {export_s:.0f} s; "
          f"seconds (eager time / time)")
    names = ["eager", "optimised", *ort_runs]
    print(f"{'size':>6} " + " ".join(f"{n:>24}" for n in names) + f" {'ORT max|diff|':>14} {'reps':>5}")
    ok = True
    for size in sizes:
        x = torch.rand(1, 5, size, size) - 0.5
        x[:, 3] = (torch.rand(1, size, size) > 0.5).float()
        xn = x.numpy()

        def eager() -> torch.Tensor:
            with torch.inference_mode():
                return model(x)[0][0]

        cands = {"eager": eager, "optimised": lambda: predict_prob(fast, x)}
        cands.update({name: (lambda run=run: run(xn)) for name, run in ort_runs.items()})
        med = interleaved(cands, repeats[size])
        ref = eager().numpy()
        diff = max(float(abs(run(xn) - ref).max()) for run in ort_runs.values())
        ok &= diff <= 1e-4
        cells = " ".join(f"{med[n]:>13.3f} s ({med['eager'] / med[n]:.2f}x)" for n in names)
        print(f"{size:>5}^2 {cells} {diff:14.2e} {repeats[size]:>5}")
    print("ONNX Runtime max abs diff <= 1e-4:", "OK" if ok else "FAILED")
    return ok


def step_flops(step: Callable[[], object]) -> int:
    """Floating-point operations of one training step, counted by torch's FlopCounterMode (convolutions
    and matrix products, forward and backward; elementwise work is not counted, so the ratio to the
    peak below is an upper bound of the arithmetic done, a lower bound of how far from the limit)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """This CPU's measured fp32 arithmetic limit (FLOP/s): the best of ``repeats`` n x n SGEMMs."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def bench_train_step(width: float = 0.25, size: int = 192, batch: int = 8, repeats: int = 5,
                     threads: int = 2) -> None:
    """The smoke training step as trained before (channels_last, Adam's per-parameter loop) and now
    (channels_last, fused Adam), against the CPU's measured arithmetic limit."""
    torch.manual_seed(0)
    x = torch.rand(batch, 5, size, size) - 0.5
    x[:, 3] = (torch.rand(batch, size, size) > 0.5).float()  # a coarse-mask channel in [0, 1]
    gt = (torch.rand(batch, 1, size, size) > 0.7).float()

    def make(channels_last: bool, fused: bool) -> Callable[[], object]:
        torch.manual_seed(0)
        model, encoder = build_refiner(5, width, coarse_prior=4.0).train(), build_gt_encoder(width).train()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model, encoder = model.to(memory_format=fmt), encoder.to(memory_format=fmt)
        opt = torch.optim.Adam(model.parameters(), lr=3e-4, fused=fused or None)
        xi, gi = x.contiguous(memory_format=fmt), gt.contiguous(memory_format=fmt)

        def step() -> float:
            maps, feats = model(xi)
            with torch.no_grad():
                _, gfeats = encoder(gi)
            loss, terms = dis_sam_loss(maps, gt, feats, gfeats, model=model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return terms["total"]
        return step

    cands = {"default layout": make(False, False), "before: channels_last": make(True, False),
             "now: channels_last + fused Adam": make(True, True)}
    flops = step_flops(make(True, False))
    peak = matmul_peak(threads)
    med = interleaved(cands, repeats)
    print(f"smoke train step (width {width}, {size} px, batch {batch}, fwd+GT enc+dis_sam_loss+bwd+Adam), "
          f"median of {repeats}; {flops / 1e9:.1f} GFLOP per step (conv/matmul, counted); measured fp32 "
          f"peak {peak / 1e9:.0f} GFLOP/s ({threads} threads, 2048^2 SGEMM)")
    base = med["before: channels_last"]
    for name, seconds in med.items():
        print(f"  {name:34s} {seconds:.3f} s  {flops / seconds / 1e9:6.1f} GFLOP/s = "
              f"{flops / seconds / peak:5.1%} of peak   ({base / seconds:.2f}x the step as trained before)")


def print_cpu(threads: int) -> None:
    """The CPU this ran on (model name; AVX2, AVX-512, AMX), first: the ratios below depend on it."""
    print(cpu_line(threads))


def print_path_choice(sizes: list[int], widths: tuple[float, ...] = (1.0, 0.25)) -> None:
    """Which inference path ``DisSam`` would choose here for each width and size, and why: the chooser
    (``choose_inference_path``, no disk cache) times eager and the optimised path on a dummy input
    and keeps the optimised one only when it beats eager by more than the margin."""
    print(f"path chooser (DisSam's default; optimised only if > {TIE_MARGIN:.0%} faster than eager, bf16 "
          f"never): median of 3 after a warm-up, interleaved")
    for width in widths:
        torch.manual_seed(0)
        model = with_bn_stats(build_refiner(in_ch=5, width=width)).eval()
        for size in sizes:
            _, choice = choose_inference_path(model, size, cache_file=None)
            t = choice["timings"]
            print(f"  width {width:<4} {size:>5}^2: {choice['path']:>9}  (eager {t['eager']:.3f} s, optimised "
                  f"{t['optimised']:.3f} s = {t['eager'] / t['optimised']:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--onnx-sizes", type=int, nargs="*", default=[512, 1024],
                        help="sizes for the ONNX Runtime comparison (none: skip it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print_cpu(args.threads)
    start = time.perf_counter()
    if not args.skip_train:  # first: retain_freed_memory() below changes the allocator for the process
        bench_train_step(threads=args.threads)
    ok = bench_onnxruntime(args.onnx_sizes, {s: 5 if s <= 512 else 3 for s in args.onnx_sizes}, args.threads)
    ok &= bench_inference(args.sizes, repeats={s: 7 if s <= 256 else 5 if s <= 512 else 3 for s in args.sizes},
                         retained_size=max(args.sizes))
    print_path_choice(args.sizes)
    print(f"total {time.perf_counter() - start:.0f} s")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
