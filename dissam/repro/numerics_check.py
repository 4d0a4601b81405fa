"""Do two CPUs train the same bits? A few smoke-width refiner steps on fixed data, and digests of the result.

``python -m dissam.repro.numerics_check [--numerics portable] [--steps 3] [--size 64] [--batch 4]`` prints one
JSON line: digests of the weights and of the inference maps after the steps, the numerics in force
(:func:`dissam.numerics.describe`), the CPU (:func:`dissam.cpuinfo.cpu_line`) and the median seconds per
step (wall and process CPU time, first step left out). Under portable numerics the digests are the same on
every x86-64 CPU with AVX2 (the reference values are in tests/test_portable_numerics.py); under native
numerics they follow the CPU. The steps are those of :mod:`dissam.repro.train`: the refiner at width 0.25 with
the coarse prior, in channels_last, the frozen GT encoder's features, the DIS-SAM loss with its ORTHO
term, fused Adam; the data are drawn by NumPy from a fixed seed. Torch is imported only after
``--numerics`` has set the environment (:func:`dissam.numerics.portable_environment`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from typing import Any

import numpy as np

from .. import numerics


def batch(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch: input ``[n, 5, size, size]`` (RGB, a coarse mask with 5% of pixels flipped, a filled
    box) and GT ``[n, 1, size, size]`` (blobs of 8 px cells), float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    cell = 8
    low = rng.standard_normal((n, 1, -(-size // cell), -(-size // cell))).astype(np.float32)
    gt = (np.kron(low, np.ones((cell, cell), np.float32))[..., :size, :size] > 0.3).astype(np.float32)
    rgb = np.clip(gt * rng.uniform(0.2, 0.8, (n, 3, 1, 1)) + 0.2 * rng.standard_normal((n, 3, size, size)), 0, 1)
    mask = np.where(rng.random(gt.shape) < 0.05, 1 - gt, gt)
    box = np.zeros_like(gt)
    box[..., size // 8:size - size // 8, size // 8:size - size // 8] = 1
    return np.concatenate([rgb, mask, box], 1).astype(np.float32), gt


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def train_steps(steps: int = 3, size: int = 64, batch_size: int = 4, width: float = 0.25) -> dict[str, Any]:
    """``steps`` refiner training steps from seed 0 in this process's numerics; digests and timings."""
    import torch

    from ..losses import dis_sam_loss
    from ..model import build_gt_encoder, build_refiner, optimize_for_inference, predict_prob
    from ..variant import Variant
    from .train import make_optimizer

    x_np, gt_np = batch(batch_size, size)
    x, gt = torch.from_numpy(x_np), torch.from_numpy(gt_np)
    torch.manual_seed(0)
    model = build_refiner(in_ch=5, width=width, coarse_prior=4.0).to(memory_format=torch.channels_last).train()
    encoder = build_gt_encoder(width=width).train().requires_grad_(False)  # frozen, batch statistics
    variant = Variant()
    optimizer = make_optimizer(model.parameters(), variant, 2e-3, 0.0, "cpu")
    wall, cpu, losses = [], [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        maps, features = model(x.contiguous(memory_format=torch.channels_last))
        with torch.no_grad():
            _, gt_features = encoder(gt)
        loss, terms = dis_sam_loss(maps, gt, features=features, gt_features=gt_features, model=model,
                                   w_ortho=variant.ortho_weight, ortho=variant.ortho)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        losses.append(terms["total"])
    with torch.inference_mode():
        prob = predict_prob(optimize_for_inference(model), x)
    timed = slice(1, None) if steps > 1 else slice(None)
    return {"weights": _digest(model.state_dict().values()), "maps": _digest([prob]),
            "losses": [float(v) for v in losses], "threads": torch.get_num_threads(),
            "aten": torch.backends.cpu.get_cpu_capability(),
            "step_s": statistics.median(wall[timed]), "step_cpu_s": statistics.median(cpu[timed])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dissam.repro.numerics_check", description=__doc__.splitlines()[0])
    p.add_argument("--numerics", choices=numerics.MODES, default=None, help="default: $DISSAM_NUMERICS, else native")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--size", type=int, default=64, help="input size in px (the smoke profile trains at 192)")
    p.add_argument("--batch", type=int, default=4, help="batch size (the smoke profile's main run: 8)")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--threads", type=int, default=None,
                   help="threads before the numerics are applied (a machine with that many cores; portable numerics "
                   "then pin their own count)")
    p.add_argument("--run-threads", type=int, default=None,
                   help="threads after the numerics are applied (the CPU ablation runs train with 1)")
    args = p.parse_args(argv)
    mode = args.numerics or numerics.requested_mode()
    if mode == "portable":  # before torch is imported
        os.environ.update(numerics.portable_environment())
    import torch

    from ..cpuinfo import cpu_line

    if args.threads:
        torch.set_num_threads(args.threads)
    numerics.apply(mode)
    if args.run_threads:
        torch.set_num_threads(args.run_threads)
    result = train_steps(args.steps, args.size, args.batch, args.width)
    print(json.dumps({**result, "numerics": numerics.describe(), "cpu": cpu_line()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
