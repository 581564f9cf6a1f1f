"""Process-group set-up and the collectives the losses need.

Training is launched with ``torchrun`` (one process per GPU, or several CPU processes with gloo);
a plain ``cvd fit`` is a world of one. The contrastive and independence losses must see the
*global* batch, so embeddings are gathered with a differentiable all-gather.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks this process's GPU when CUDA is available, else the CPU."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from cvd.errors import ConfigError

            raise ConfigError("train.device = 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment (or stay a world of one)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a world of one)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


_GATHER_GROUPS: dict[int, dist.ProcessGroup] = {}


def _gather_group() -> dist.ProcessGroup:
    """A process group of its own for the loss's gather.

    Its backward runs inside autograd while DDP is all-reducing gradient buckets on the default
    group; sharing one group lets the two streams of collectives pair up wrongly across ranks
    (seen on gloo: wrong gradients, no error). Every rank reaches the first gather at the same
    point, so the group is created collectively there.
    """
    world = dist.get_world_size()
    if world not in _GATHER_GROUPS:
        _GATHER_GROUPS[world] = dist.new_group(ranks=list(range(world)))
    return _GATHER_GROUPS[world]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward returns to each rank the summed gradient of its own slice.

    Every rank computes the same loss on the gathered batch; summing the gradients of the local
    slice over ranks and then letting DDP average the parameter gradients gives exactly the
    gradient of the single-process loss on the global batch. The backward uses all_reduce
    rather than reduce_scatter/all_to_all so that it also works on gloo.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:  # noqa: ANN001
        world_size = dist.get_world_size()
        ctx.rank = dist.get_rank()
        ctx.batch = tensor.shape[0]
        ctx.group = group
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch], None


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0 (rank order), keeping the gradient path.

    Every rank must pass the same shape (the samplers drop the last incomplete batch).
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor, _gather_group())


def gather_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather without gradients for tensors whose first dimension may differ between ranks."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    world_size = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:count] for part, count in zip(parts, counts)], dim=0)


def broadcast_object(value: object, source: int = 0) -> object:
    """Send a picklable value from ``source`` to every rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def all_reduce_sum(value: float, device: torch.device) -> float:
    """Sum a Python number over ranks (counts of skipped images, non-finite flags, ...)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    tensor = torch.tensor([float(value)], device=device, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item())
