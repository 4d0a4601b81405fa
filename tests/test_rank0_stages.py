"""Under torchrun the data work before training (stage 1, resized caches) runs on rank 0 alone."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from dissam.repro import pipeline
from dissam.repro.config import get_profile


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    profile = get_profile("tiny")  # device cpu: a gloo world
    folder = Path(out)
    pipeline.on_rank0(profile, lambda: (folder / f"work-{rank}").write_text("x"))
    (folder / f"after-{rank}").write_text(str(sorted(p.name for p in folder.glob("work-*"))))

    def fail() -> None:
        raise ValueError("rank 0 could not read the data")

    try:
        pipeline.on_rank0(profile, fail)
    except (ValueError, RuntimeError) as err:
        (folder / f"error-{rank}").write_text(type(err).__name__)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_only_rank0_does_the_work_and_the_others_wait(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2)
    assert sorted(p.name for p in tmp_path.glob("work-*")) == ["work-0"]
    for rank in (0, 1):  # every rank went on only after rank 0 had finished
        assert (tmp_path / f"after-{rank}").read_text() == "['work-0']"
    assert (tmp_path / "error-0").read_text() == "ValueError" and (tmp_path / "error-1").read_text() == "RuntimeError"
