"""Multi-process training on torch.distributed, as started by ``torchrun``.

``torchrun --nproc-per-node N -m ganzoo train VARIANT ...`` sets RANK,
WORLD_SIZE and LOCAL_RANK; the trainer then initialises the process group
(NCCL on CUDA, gloo on CPU) and splits every batch; after each phase's
backward it averages the gradients of the parameters that phase trains over
the ranks (one flat all-reduce), so any loss is exact under torchrun,
double-backward penalties and regulariser phases included, and losses always
see the plain networks (no DistributedDataParallel wrapper):

* ``batch_size`` is the **global** batch. Each optimiser step draws the same
  global batch on every rank (the data generators run in lockstep) and rank r
  keeps shard r; with ``accumulate=A`` each rank further splits its shard into
  A micro-batches whose gradients are summed before the one all-reduce.
* Randomness inside a loss (noise z, penalty weights eps) comes from a seed
  derived from one lockstep draw and the shard index, so every shard has its
  own stream, and a run on W ranks equals a single-process run with
  ``accumulate=W`` over the same global batches (BatchNorm then normalises
  each shard in both; SyncBatchNorm is the ``--sync-bn`` option on CUDA).

Only rank 0 writes samples, logs and checkpoints; every rank resumes from them
(multi-node runs need a shared filesystem for the run directory).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .env import env_number
from .errors import GanzooError

TIMEOUT_ENV = "GANZOO_DIST_TIMEOUT"  # seconds a collective may wait before the run fails


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_from_env(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes; returns the context and this rank's device."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return SINGLE, device
    import torch.distributed as dist

    ctx = DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                      int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise GanzooError(f"rank with LOCAL_RANK {ctx.local_rank} has no GPU: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s); start at most that many processes "
                              "per node (--nproc-per-node), or train on the CPU with --device cpu (gloo)")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # A timeout bounds every collective: a rank that died never leaves the others hanging.
        timeout = datetime.timedelta(seconds=env_number(TIMEOUT_ENV, 300, integer=False))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout,
                                device_id=device if device.type == "cuda" else None)
    return ctx, device


def shutdown() -> None:
    """Wait for every rank at the end of a run; the process group dies with the process.

    With torch 2.13 and gloo, destroy_process_group() aborted a rank at exit
    ("terminate called without an active exception") in about one run in
    five on 2 CPU processes. Without it the abort still came at interpreter
    exit, more rarely, so the CLI leaves a torchrun process with os._exit
    (ganzoo.cli.run).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper, or the module itself.

    ganzoo's trainer no longer wraps networks (it all-reduces gradients after
    each backward), so losses receive plain modules; this stays for code that
    wraps nets itself.
    """
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def all_reduce_gradients(optimizers: list[torch.optim.Optimizer], ctx: DistContext) -> None:
    """Average the gradients of the optimisers' parameters over the ranks, in place.

    One flat all-reduce per call (the gradients are copied into one buffer and
    back). Every rank runs the same code, so the same parameters have
    gradients; a parameter without one on every rank is left alone.
    """
    if not ctx.enabled:
        return
    import torch.distributed as dist

    grads = [p.grad for opt in optimizers for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, in place.

    The trainer calls this once before each optimiser step's forward passes
    (not at every forward, as DDP would: a phase that runs a net twice before
    one backward would then overwrite running statistics that the first
    forward saved for backward, which torch 2.11 rejects).
    """
    if not ctx.enabled:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if not ctx.enabled:
        return values
    import torch.distributed as dist

    values = values.clone()
    dist.all_reduce(values)
    return values / ctx.world


def all_reduce_max(value: float, ctx: DistContext, device: torch.device) -> float:
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    flag = torch.tensor([float(value)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag.item()


def all_reduce_all(flag: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """A 0-d bool tensor that is True when ``flag`` is True on every rank; stays on the device
    (no host synchronisation: the trainer reads it at the end of a generator step)."""
    if not ctx.enabled:
        return flag
    import torch.distributed as dist

    value = flag.to(torch.float32).reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value[0] > 0.5


def gather_from_ranks(rows: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``rows`` (k_r, ...), in rank order; ``[rows]`` outside torchrun.

    For a variant's own state that each rank changes from its shard (cyclegan's image pools):
    gathered in ``end_step``, every rank can apply all shards' changes in shard order and stay
    equal to a single process with ``--accumulate``. The row counts may differ between ranks
    (the other dimensions may not); every rank must call it at the same point of the step.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [rows]
    world = dist.get_world_size()
    counts = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([rows.shape[0]], dtype=torch.long, device=rows.device))
    longest = max(int(c) for c in counts)
    padded = rows.new_zeros(longest, *rows.shape[1:])
    padded[:rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous())
    return [part[:int(count)] for part, count in zip(gathered, counts)]


def broadcast_object(value: Any, ctx: DistContext) -> Any:
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def check_consistent(nets: nn.Module, ctx: DistContext, device: torch.device) -> None:
    """Raise unless every rank holds the same parameters (a cheap checksum gather)."""
    if not ctx.enabled:
        return
    import torch.distributed as dist

    with torch.no_grad():
        flat = torch.cat([p.detach().double().reshape(-1) for p in nets.parameters()])
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device).remainder_(97)
        checksum = torch.stack([flat.sum(), (flat * weights).sum()]).to(device)
    gathered = [torch.zeros_like(checksum) for _ in range(ctx.world)]
    dist.all_gather(gathered, checksum)
    if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
        raise GanzooError(f"ranks disagree on the parameters after training: {[g.tolist() for g in gathered]}")


def sync_batchnorm(nets: nn.Module, device: torch.device) -> nn.Module:
    """Convert BatchNorm layers to SyncBatchNorm (statistics over the global batch)."""
    if device.type != "cuda":
        raise GanzooError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm has no CPU implementation")
    return nn.SyncBatchNorm.convert_sync_batchnorm(nets)
