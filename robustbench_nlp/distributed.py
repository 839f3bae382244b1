"""Runs past one process and one machine: multi-process training and attack shards.

**Training on several processes** (``accelerate launch``, or ``torchrun``): every process
runs ``rbnlp run``; Hugging Face Accelerate's :class:`~accelerate.PartialState` sets up the
process group (NCCL on GPUs, gloo on CPUs) and each process's device. The main process
(rank 0) owns the run: it alone reads and writes the database and the artifacts, tells the
other processes which configuration to train (:meth:`Processes.start_training`), then
evaluates and attacks once training is over; the other processes train in lockstep and exit.

Each global batch of the shared loop (:func:`robustbench_nlp.training.train`, same seed, so
the same batches on every process) is split round-robin over the processes
(:func:`local_part`); after the defense's ``step`` has run its forwards and backwards, the
loop averages the gradients over the processes weighted by each process's share of the
batch (:func:`average_gradients`), so every process applies the same update: the gradient of
the global batch's mean loss, as DDP computes it. The averaging happens *after* the step
rather than in DDP's backward hooks because the defenses run several forwards and backwards
per step (PGD's inner ascent with ``autograd.grad``, FreeLB's K accumulated backwards, ROSE's
two passes and its saliency gradient), which DDP's reducer does not allow without per-defense
``no_sync`` handling; the defenses stay unchanged and unaware of processes, except ROSE,
whose first-order saliency (a norm of a summed-over-the-batch gradient) must be summed over
processes before the norm (:func:`sum_across_processes`). Dropout and δ₀ draw from each
process's own random stream, so a multi-process run matches a one-process run in
distribution, and exactly (up to float summation order) when the model has no dropout and
the defense no random δ₀.

**Attack shards** (``rbnlp run --shard i/n``): shard i of n attacks the rows
``examples[i::n]`` (round-robin, as the one-machine ``--workers`` split them) and stores them
in the run in a shared database; the run is finished by whichever shard completes the set,
or by ``rbnlp merge RUN_ID`` (:func:`missing_examples`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .errors import ConfigError


def launched() -> bool:
    """True inside a multi-process launch (``accelerate launch`` / ``torchrun`` set
    ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """False only in a non-zero rank of a multi-process launch (``RANK`` > 0)."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class Processes:
    """This process's place in the launch.

    Attributes:
        rank: index of this process (0 = main).
        world_size: number of processes (1 = not distributed).
        device: this process's device.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _sent: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- the main process tells the others what to do ----------------------------------------
    def start_training(self, run_config: dict) -> None:
        """Main process: send the run configuration (a ``RunConfig`` dict) to train with."""
        self._send({"train": run_config})

    def skip_training(self) -> None:
        """Main process: nothing to train (a resumed, already trained run); the others exit."""
        self._send({"train": None})

    def abort(self) -> None:
        """Main process: send "stop" unless an order was already sent (called on errors, so
        the other processes never wait for a run that failed before training)."""
        if not self._sent:
            self._send({"train": None})

    def _send(self, message: dict) -> None:
        if self.enabled and not self._sent:
            broadcast_object(message, self)
        self._sent = True

    def receive(self) -> dict | None:
        """Other processes: the run configuration to train with, or ``None`` (stop)."""
        return broadcast_object(None, self)["train"]


def processes(device: str | None = None) -> Processes:
    """This process's :class:`Processes`; sets up the process group in a multi-process launch.

    Args:
        device: the run's ``device`` option. In a multi-process launch each process gets its
            own device from Accelerate (``cuda:<local rank>``), or the CPU when ``device`` is
            ``cpu`` or no GPU is present.
    """
    from .backbones import pick_device

    if not launched():
        return Processes(0, 1, pick_device(device))
    from accelerate import PartialState

    cpu = (device is not None and torch.device(device).type == "cpu") \
        or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    return Processes(state.process_index, state.num_processes, state.device)


def broadcast_object(obj, procs: Processes):
    """``obj`` of the main process, on every process (picklable objects)."""
    if not procs.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def local_part(idx, procs: Processes):
    """This process's rows of a global batch ``idx``: ``idx[rank::world_size]``.

    A batch with fewer rows than processes is processed whole by every process (the
    averaged gradient is then that batch's gradient), so no process ever has an empty batch.
    """
    if not procs.enabled or len(idx) < procs.world_size:
        return idx
    return idx[procs.rank::procs.world_size]


@torch.no_grad()
def average_gradients(params: list[torch.Tensor], local: int, total: int,
                      procs: Processes, bucket: int = 2 ** 25) -> None:
    """Replace each ``p.grad`` by Σ_r (n_r / n) · grad_r over the processes, in place.

    ``grad_r`` is process r's gradient of the mean loss over its ``n_r`` = ``local`` rows and
    n = ``total`` the global batch size, so the result is the gradient of the mean loss over
    the global batch. (When the batch was processed whole by every process,
    ``local == total`` and every weight is 1 / world size.) A parameter keeps ``grad=None``
    only when no process produced a gradient for it, as in a one-process step.

    Args:
        params: the optimizer's parameters, in the same order on every process.
        local, total: n_r and n.
        procs: the launch.
        bucket: elements per all-reduce (the gradients are flattened in buckets).
    """
    if not procs.enabled:
        return
    dist = torch.distributed
    weight = local / total if local != total else 1.0 / procs.world_size
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                       device=procs.device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    start = 0
    while start < len(live):
        group, size = [], 0
        while start < len(live) and (not group or size + live[start].numel() <= bucket):
            group.append(live[start])
            size += live[start].numel()
            start += 1
        flat = torch.cat([p.grad.reshape(-1).float() for p in group]) * weight
        dist.all_reduce(flat)
        offset = 0
        for p in group:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


def sum_across_processes(tensors):
    """Sum each tensor of ``tensors`` over the processes (in place; ``None`` entries, the same
    on every process, are skipped). A no-op outside a multi-process launch. Returns
    ``tensors``."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return tensors
    for t in tensors:
        if t is not None:
            dist.all_reduce(t)
    return tensors


def broadcast_parameters(params: list[torch.Tensor], procs: Processes) -> None:
    """Copy the main process's values of ``params`` to every process (the trainable tensors
    at the start of training, so every process starts from the same point)."""
    if not procs.enabled:
        return
    with torch.no_grad():
        for p in params:
            torch.distributed.broadcast(p.data, src=0)


# -- attack shards ------------------------------------------------------------------------------

def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` → ``(i, n)`` with 0 ≤ i < n; ``None`` stays ``None``.

    Raises:
        ConfigError: not of the form ``i/n`` with integers 0 ≤ i < n.
    """
    if text is None:
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects i/n (e.g. 0/2), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 ≤ i < n")
    return i, n


def shard_of(examples, shard: tuple[int, int] | None):
    """Rows of ``examples`` (a DataFrame) that shard ``(i, n)`` attacks: ``examples[i::n]``."""
    if shard is None:
        return examples
    i, n = shard
    return examples.iloc[i::n]


def missing_examples(expected, stored: list[dict]) -> list[int]:
    """Indices of ``expected`` (the run's example indices) not among the ``stored`` rows."""
    have = {r["index"] for r in stored}
    return [int(i) for i in expected if int(i) not in have]
