"""Single process or DDP under torchrun (detected through the RANK variable)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

# torch.distributed.nn.functional binds `group.WORLD` as a default argument when it is
# first imported. DistributedDataParallel imports it lazily (through torch._dynamo), so
# after init_process_group it would bind the default group and keep it alive past
# destroy_process_group; gloo's worker threads then live on into interpreter shutdown,
# where one that frees a tensor aborts the rank (SIGABRT). Imported here, before any
# group exists, it binds None.
import torch.distributed.nn.functional  # noqa: F401

from shared.errors import ConfigError, TrainingError

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: ``rank`` of ``world`` processes on ``device``."""

    rank: int
    world: int
    device: torch.device
    ddp: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_choice: str) -> Runtime:
    """Pick the device ('auto' = CUDA when present) and join the process group if any."""
    use_cuda = device_choice == "cuda" or (
        device_choice == "auto" and torch.cuda.is_available()
    )
    if device_choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "config key 'train.device' is 'cuda' but CUDA is not available"
        )
    if "RANK" not in os.environ:
        return Runtime(0, 1, torch.device("cuda" if use_cuda else "cpu"), False)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device(f"cuda:{local}")
    else:
        device = torch.device("cpu")
    return Runtime(rank, world, device, True)


def any_rank(runtime: Runtime, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (a collective under DDP).

    Decisions that end the loop, such as the time budget, must agree across ranks: a rank
    that leaves early strands the others in their next gradient all-reduce.
    """
    if not runtime.ddp:
        return flag
    vote = torch.tensor([float(flag)], device=runtime.device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def together(runtime: Runtime, phase: Callable[[], T]) -> T:
    """Run one phase of training on this rank, then vote: when the phase failed on any
    rank, it fails on every rank.

    The rank that failed re-raises its own exception (with its traceback); the others
    raise TrainingError. Without the vote a rank that stops alone leaves the others
    waiting in their next collective (DDP's buffer broadcast or gradient all-reduce).
    """
    try:
        result, error = phase(), None
    except Exception as exc:  # re-raised below, once every rank knows
        result, error = None, exc
    if any_rank(runtime, error is not None):
        if error is not None:
            raise error
        raise TrainingError("another rank stopped with an error; this rank stops too")
    return result


def teardown(runtime: Runtime) -> None:
    """Leave the process group; its gloo or NCCL threads end here, not at interpreter exit.

    A rank that stopped with an error can still hold its DDP model through reference
    cycles (the exception's traceback holds the frames that hold the model); the model's
    reducer keeps the group and its threads alive until those cycles are collected, so
    they are collected first.
    """
    if runtime.ddp and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
