"""Cross-process BatchNorm + DDP on gloo: two processes with half batches give one process's gradients."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dissam.repro.distributed import CrossProcessBatchNorm2d, sync_batchnorm


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                         nn.Conv2d(8, 1, 1), nn.Sigmoid())


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 16, 16, generator=g), (torch.rand(4, 1, 16, 16, generator=g) > 0.5).float()


def _loss(model: nn.Module, x: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy(model(x), gt)


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = nn.parallel.DistributedDataParallel(sync_batchnorm(_net(), torch.device("cpu")))
    x, gt = _batch()
    _loss(model, x[rank::2], gt[rank::2]).backward()
    if rank == 0:
        torch.save({name.removeprefix("module."): p.grad for name, p in model.named_parameters()}, out)
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sync_batchnorm_replaces_every_batchnorm():
    model = sync_batchnorm(_net(), torch.device("cpu"))
    kinds = [type(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert kinds == [CrossProcessBatchNorm2d, CrossProcessBatchNorm2d]


def test_two_processes_give_the_gradients_of_one(tmp_path):
    reference = _net()
    _loss(reference, *_batch()).backward()
    out = tmp_path / "grads.pt"
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2)
    grads = torch.load(out, weights_only=True)
    for name, p in reference.named_parameters():
        if name.endswith("bias") and name in ("0.bias", "3.bias"):
            continue  # conv bias before BatchNorm: its true gradient is 0, only rounding remains
        assert torch.allclose(grads[name], p.grad, rtol=1e-4, atol=1e-6), name


class _Reduced(Exception):
    """Raised by a stand-in all_reduce to report the device of the tensor it was given."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(str(device))
        self.device = device


def test_collectives_reduce_on_the_device_the_nccl_backend_needs(monkeypatch):
    """Under torchrun on GPUs the group is NCCL, which reduces CUDA tensors only: the per-step loss
    average and the time-limit vote must put their tensors on cuda:<local rank>, not on the CPU."""
    from dissam.repro import distributed

    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_backend", lambda group=None: "nccl")
    world = distributed.World(rank=1, size=2, local_rank=1)
    assert distributed.collective_device(world) == torch.device("cuda", 1)
    monkeypatch.setattr(distributed.dist, "get_backend", lambda group=None: "gloo")
    assert distributed.collective_device(world) == torch.device("cpu")

    # Every collective uses that device (a stand-in device: no CUDA here).
    monkeypatch.setattr(distributed, "collective_device", lambda w: torch.device("meta"))

    def all_reduce(tensor, op=None, group=None):
        raise _Reduced(tensor.device)

    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    for call in (lambda: distributed.mean_across({"total": 1.0}, world),
                 lambda: distributed.any_across(True, world)):
        with pytest.raises(_Reduced) as reduced:
            call()
        assert reduced.value.device == torch.device("meta")


def test_backend_and_device_of_each_rank():
    """Ranks sharing GPUs run on gloo, rank k on GPU k mod count; NCCL is refused for them. BatchNorms use
    nn.SyncBatchNorm only on CUDA under NCCL."""
    from dissam.repro.distributed import batchnorm_kind, choose_backend, device_index

    assert choose_backend("cuda") == "nccl" and choose_backend("cpu") == "gloo"
    assert choose_backend("cuda:0", share_gpus=True) == "gloo"
    assert choose_backend("cuda", override="gloo") == "gloo"
    with pytest.raises(ValueError, match="NCCL refuses"):
        choose_backend("cuda", override="nccl", share_gpus=True)
    with pytest.raises(ValueError, match="nccl"):
        choose_backend("cuda", override="mpi")
    assert [device_index(r, 1, share_gpus=True) for r in range(3)] == [0, 0, 0]
    assert [device_index(r, 2, share_gpus=True) for r in range(4)] == [0, 1, 0, 1]
    assert device_index(3, 8) == 3
    with pytest.raises(ValueError):
        device_index(0, 0, share_gpus=True)
    assert batchnorm_kind("cuda", "nccl") == "sync"
    assert batchnorm_kind("cuda", "gloo") == "all_reduce" and batchnorm_kind("cpu", "gloo") == "all_reduce"
    assert batchnorm_kind("cuda", None) == "all_reduce"
