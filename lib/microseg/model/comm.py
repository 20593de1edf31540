"""What the training loop needs from its launcher: rank, world size, a wrapped model and
optimizer, and a few collectives. One class per backend, same loop body for all."""

from __future__ import annotations

import os

import torch
from torch import nn


class LocalComm:
    """One process: every collective is the identity."""

    rank, world = 0, 1

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        return model, optimizer

    def broadcast_object(self, obj):
        return obj

    def gather_objects(self, obj) -> list:
        return [obj]

    def sum(self, value: float) -> float:
        return value

    def close(self) -> None:
        pass


class TorchDDPComm(LocalComm):
    """torch.distributed under TorchDistributor / torchrun (RANK, WORLD_SIZE, MASTER_* set)."""

    def __init__(self, backend: str = "gloo"):
        import torch.distributed as dist

        self.dist = dist
        if not dist.is_initialized():
            dist.init_process_group(backend)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if backend == "nccl" \
            else torch.device("cpu")

    def wrap(self, model, optimizer):
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        return ddp, optimizer

    def broadcast_object(self, obj):
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj) -> list:
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def sum(self, value: float) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64)
        self.dist.all_reduce(t)
        return float(t)

    def close(self) -> None:
        self.dist.destroy_process_group()


class HorovodComm(LocalComm):
    """Horovod (``horovod.spark.run`` / HorovodRunner): DistributedOptimizer + broadcasts."""

    def __init__(self):
        import horovod.torch as hvd

        self.hvd = hvd
        hvd.init()
        self.rank, self.world = hvd.rank(), hvd.size()

    def wrap(self, model, optimizer):
        hvd = self.hvd
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        return model, optimizer

    def broadcast_object(self, obj):
        return self.hvd.broadcast_object(obj, root_rank=0)

    def gather_objects(self, obj) -> list:
        return self.hvd.allgather_object(obj)

    def sum(self, value: float) -> float:
        return float(self.hvd.allreduce(torch.tensor([float(value)], dtype=torch.float64), op=self.hvd.Sum))

    def close(self) -> None:
        self.hvd.shutdown()
