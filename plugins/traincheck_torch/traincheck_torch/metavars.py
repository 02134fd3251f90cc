"""Meta variables derived from torch state: step, epoch, stage, rank, autocast.

* ``step``: optimizer steps completed, starting at 0. It advances after each optimizer step
  that really ran (a ``GradScaler`` that skips the step does not advance it; micro-batches of
  gradient accumulation do not either). With several optimizers, ``step`` is the largest
  number of steps any one optimizer has taken, so a GAN's two optimizers stepping once per
  iteration advance it once per iteration.
* ``epoch``: ``DistributedSampler.set_epoch(e)`` when the program calls it; otherwise the number
  of times the training DataLoader (the first one iterated in the ``train`` stage) started an
  iteration, minus one.
* ``stage``: ``train`` when a trained model (one whose parameters an optimizer holds) runs a
  forward in training mode with grad enabled, ``eval`` when it runs in eval mode or under
  ``no_grad``, or when ``.eval()`` is called on it; ``inference`` instead of ``eval`` in a
  program that never created an optimizer. ``traincheck.annotate(stage=...)`` overrides.
* ``rank``/``world_size``/``local_rank``: from ``torch.distributed`` once initialized (also under
  ``torch.multiprocessing.spawn`` where ``RANK`` is not in the environment); ``local_rank`` from
  ``LOCAL_RANK`` when set.
* ``autocast``: the active autocast dtype (``bfloat16``, ...) at the start of each top-level
  call, ``None`` outside autocast.
"""

from __future__ import annotations

import os
from typing import Any

from traincheck_core import Session

from .summarize import dtype_name

__all__ = ["MetaState"]


class MetaState:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.opt_steps: dict[int, int] = {}
        self.step = 0
        self.epoch_from_sampler = False
        self.train_loader: int | None = None
        self.loader_iters = 0
        self.cuda = False

    def start(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.session.set_meta(step=0)
        self.update_dist()

    def ends_step(self, opt: Any) -> bool:
        """Whether :meth:`after_step` for ``opt`` will end the current step."""
        return self.opt_steps.get(id(opt), 0) + 1 > self.step

    def after_step(self, opt: Any) -> None:
        n = self.opt_steps[id(opt)] = self.opt_steps.get(id(opt), 0) + 1
        if n > self.step:
            self.step = n
            self.session.set_meta(step=n)

    def set_stage(self, training: bool, grad: bool, any_optimizer: bool) -> None:
        if training and grad:
            stage = "train"
        else:
            stage = "eval" if any_optimizer else "inference"
        if self.session.meta.get("stage") != stage:
            self.session.set_meta(stage=stage)

    def update_autocast(self) -> None:
        import torch

        dtype = None
        if torch.is_autocast_enabled("cpu"):
            dtype = dtype_name(torch.get_autocast_dtype("cpu"))
        elif self.cuda and torch.is_autocast_enabled("cuda"):
            dtype = dtype_name(torch.get_autocast_dtype("cuda"))
        if self.session.meta.get("autocast", "?") != dtype:
            self.session.set_meta(autocast=dtype)

    def update_dist(self) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        local = os.environ.get("LOCAL_RANK")
        self.session.set_meta(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=int(local) if local and local.isdigit() else None)

    def on_loader_iter(self, loader: Any) -> None:
        if self.epoch_from_sampler:
            return
        if self.train_loader is None and self.session.meta.get("stage", "train") == "train":
            self.train_loader = id(loader)
        if id(loader) == self.train_loader:
            self.loader_iters += 1
            self.session.set_meta(epoch=self.loader_iters - 1)

    def on_set_epoch(self, epoch: Any) -> None:
        if isinstance(epoch, int):
            self.epoch_from_sampler = True
            self.session.set_meta(epoch=epoch)
