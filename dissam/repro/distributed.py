"""Process-group plumbing for ``torchrun``: DistributedDataParallel on gloo (CPU) or NCCL (CUDA).

A single process is the world of size 1, so the training loop has one code path. Two environment
variables let several ranks share the visible GPUs (``dissam check`` runs its DDP step with two ranks on
one GPU this way): ``DISSAM_SHARE_GPUS=1`` puts rank ``k`` on GPU ``k mod count``
(:func:`device_index`), and ``DISSAM_DDP_BACKEND`` names the backend. NCCL refuses two ranks on one
device, so sharing ranks use gloo (:func:`choose_backend`), which reduces CUDA tensors too, and batch
statistics then go through :class:`CrossProcessBatchNorm2d` (all-reduce only) instead of
``nn.SyncBatchNorm`` (:func:`batchnorm_kind`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

BACKEND_ENV = "DISSAM_DDP_BACKEND"  # "nccl" or "gloo"; unset: NCCL on CUDA, gloo on the CPU
SHARE_GPUS_ENV = "DISSAM_SHARE_GPUS"  # "1": ranks share the visible GPUs (rank k on GPU k mod count)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the index of this rank's GPU: LOCAL_RANK, modulo the visible GPUs when they are shared

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def choose_backend(device: str, override: str | None = None, share_gpus: bool = False) -> str:
    """The process group's backend: ``override`` when given, else gloo on the CPU or when ranks share GPUs,
    NCCL on CUDA. NCCL with shared GPUs is refused here: NCCL allows one rank per device."""
    if override not in (None, "", "nccl", "gloo"):
        raise ValueError(f"{BACKEND_ENV} must be 'nccl' or 'gloo', not {override!r}")
    if override == "nccl" and share_gpus:
        raise ValueError("NCCL refuses two ranks on one GPU: use gloo when ranks share GPUs")
    if override:
        return override
    return "nccl" if device.startswith("cuda") and not share_gpus else "gloo"


def device_index(local_rank: int, visible_gpus: int, share_gpus: bool = False) -> int:
    """The GPU a rank uses: its local rank, or, when ranks share the visible GPUs, local rank mod their count."""
    if not share_gpus:
        return local_rank
    if visible_gpus < 1:
        raise ValueError("ranks can share GPUs only when one is visible")
    return local_rank % visible_gpus


def batchnorm_kind(device_type: str, backend: str | None) -> str:
    """``"sync"`` (``nn.SyncBatchNorm``, which needs CUDA and NCCL's all-gather) or ``"all_reduce"``
    (:class:`CrossProcessBatchNorm2d`: all-reduce alone, which gloo offers on CPU and CUDA tensors)."""
    return "sync" if device_type == "cuda" and backend == "nccl" else "all_reduce"


def init_world(device: str) -> World:
    """Join the process group that ``torchrun`` describes in the environment (no-op when run alone); the
    backend and the GPU of each rank as :func:`choose_backend` and :func:`device_index` say."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    share = os.environ.get(SHARE_GPUS_ENV, "") == "1" and device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend=choose_backend(device, os.environ.get(BACKEND_ENV), share))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        local_rank = device_index(local_rank, torch.cuda.device_count(), share)
        torch.cuda.set_device(local_rank)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank)


def collective_device(world: World) -> torch.device:
    """Where a collective's tensors must live: NCCL reduces CUDA tensors only (a CPU tensor fails with
    "No backend type associated with device type cpu"), gloo reduces CPU tensors."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def mean_across(values: dict[str, float], world: World) -> dict[str, float]:
    """Average logged scalars over the ranks, so rank 0 logs the global batch's losses."""
    if not world.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=collective_device(world))
    dist.all_reduce(t)
    return {k: float(v) / world.size for k, v in zip(keys, t.cpu().tolist())}


def any_across(flag: bool, world: World) -> bool:
    """True on every rank when it is true on any (e.g. a wall-clock budget ran out on one of them)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=collective_device(world))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum is the sum of the gradients, all-reduced the same way."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class CrossProcessBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics span every process (``nn.SyncBatchNorm`` is CUDA-only).

    Sums and sums of squares are all-reduced with autograd, so N processes with batch B/N normalise,
    and backpropagate, exactly as one process with batch B.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        # Two passes (mean, then squared deviations): E[x^2] - E[x]^2 loses the variance to rounding.
        sums = _AllReduceSum.apply(torch.cat([x.sum((0, 2, 3)), count]))
        n = sums[-1]
        mean = sums[:channels] / n
        centred = x - mean.view(1, channels, 1, 1)
        var = _AllReduceSum.apply((centred * centred).sum((0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp_min(1))
        shape = (1, channels, 1, 1)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def _backend() -> str | None:
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch statistics across processes: ``nn.SyncBatchNorm`` on CUDA under NCCL, our all-reduce
    BatchNorm otherwise (the CPU, and CUDA under gloo; :func:`batchnorm_kind`)."""
    if batchnorm_kind(device.type, _backend()) == "sync":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = CrossProcessBatchNorm2d(child.num_features, child.eps, child.momentum,
                                                  child.affine, child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            setattr(model, name, replacement.to(child.weight.device if child.affine else device))
        else:
            sync_batchnorm(child, device)
    return model
