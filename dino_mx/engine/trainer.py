"""The DINO training loop on Hugging Face Accelerate: one process, DDP or FSDP, CPU or GPU.

Step-based: ``max_steps`` optimiser updates, each of ``grad_accum`` micro-batches of
``batch_size`` images per process. Every schedule is a closed form of the step, the data stream
is a function of the seed (:mod:`dino_mx.data.sampler`), and the checkpoint holds everything
else, so a resumed run continues bit for bit. The loop takes built parts
(:mod:`dino_mx.engine.build`) and a :class:`~dino_mx.engine.build.LoopConfig`; what a step
computes — DINOv1, DINOv2, distillation — is the objective's business.

One step: for each micro-batch, ``Learner(views) -> loss`` (teacher and student forwards, the
weighted terms), backward; at the sync, clip and freeze the heads' last layers early on, the
optimiser step; after the last micro-batch, the EMA update of the teacher.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dino_mx.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    remove_temporaries,
    save_checkpoint,
)
from dino_mx.checkpoint.format import CONFIG_FILE
from dino_mx.data import InfiniteSampler, SeededAugment
from dino_mx.data.views import Views
from dino_mx.engine.best import BestSelector
from dino_mx.engine.build import LoopConfig, TrainParts
from dino_mx.engine.divergence import check_loss
from dino_mx.engine.ema import ema_update
from dino_mx.engine.resume import truncate_history
from dino_mx.engine.schedules import StepHParams

log = logging.getLogger(__name__)


class PeriodicEval(Protocol):
    """``trainer.eval_every``: called on the main process with the teacher's backbone; logs
    what it measures (k-NN, images) and returns the scalars (:class:`dino_mx.eval.ValMonitor`)."""

    def __call__(self, backbone: nn.Module, step: int, accelerator: Accelerator) -> dict: ...


class Trainer:
    """Runs the loop over built parts. Use :func:`dino_mx.train.train` to build and run."""

    def __init__(
        self,
        parts: TrainParts,
        loop: LoopConfig,
        accelerator: Accelerator,
        run_dir: Path,
        evaluate: PeriodicEval | None = None,
        resume_from: Path | None = None,
    ):
        self.parts, self.loop, self.acc, self.run_dir = parts, loop, accelerator, run_dir
        self.learner, self.optimizer, self.teacher = parts.learner, parts.optimizer, parts.teacher
        self.state = parts.checkpoint.train_state
        self.evaluate, self.resume_from = evaluate, resume_from
        # trainer.best_metric; ``evaluate`` must be given to every process alike (they all learn
        # the main process's decision).
        self.best = (
            BestSelector(run_dir, loop.best_metric, accelerator)
            if evaluate is not None and loop.eval_every > 0
            else None
        )

    @property
    def student(self) -> nn.Module:
        """The student network (backbone + heads), unwrapped: the EMA teacher's counterpart."""
        return self.acc.unwrap_model(self.learner).student

    @property
    def objective(self) -> nn.Module:
        """The objective (its terms' state: centres, a distillation projector), unwrapped."""
        return self.acc.unwrap_model(self.learner).objective

    def loader(self) -> DataLoader:
        """The training stream from the current step on (a resumed run continues it)."""
        lp, acc = self.loop, self.acc
        start = self.state.step * lp.grad_accum * lp.batch_size
        sampler = InfiniteSampler(
            len(self.parts.dataset), lp.seed, acc.process_index, acc.num_processes, start
        )
        workers = lp.num_workers
        return DataLoader(
            SeededAugment(self.parts.dataset, self.parts.transform),
            batch_size=lp.batch_size,
            sampler=sampler,
            num_workers=workers,
            drop_last=True,
            pin_memory=acc.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            # Its own generator: creating the iterator must not draw from the global RNG, or a
            # resumed run's dropout (LoRA, drop path) would differ from an uninterrupted one.
            generator=torch.Generator().manual_seed(lp.seed + self.state.step),
        )

    def resume(self) -> None:
        """Restore ``resume_from`` (as :func:`~dino_mx.engine.resume.check_start` chose it)."""
        if self.acc.is_main_process:
            remove_temporaries(self.run_dir)  # left by an interrupted save
        if self.resume_from is None:
            return
        load_checkpoint(self.acc, self.resume_from, self.parts.checkpoint)
        log.info("resumed from %s at step %d", self.resume_from, self.state.step)

    def _set_hparams(self, hp: StepHParams) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = hp.lr * group["lr_scale"]
            group["weight_decay"] = hp.wd if group["apply_wd"] else 0.0

    def _views(self, batch: object, micro: int) -> Views:
        """The micro-batch's views on the device; ``augment.backend=batched`` crops them here.

        Batched crops draw from an RNG seeded by the seed, the micro-batch and the process, so
        a resumed run draws the same crops as an uninterrupted one and no two processes alike.
        """
        views = Views.from_batch(send_to_device(batch, self.acc.device, non_blocking=True))
        augment = self.parts.batch_augment
        if augment is None:
            return views
        lp, acc = self.loop, self.acc
        index = (self.state.step * lp.grad_accum + micro) * acc.num_processes + acc.process_index
        devices = [acc.device] if acc.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(lp.seed * 1_000_003 + index)
            return views.map_crops(lambda crops: augment(crops[0]))

    def _update(self) -> None:
        """At the gradient sync: clip, drop the heads' last-layer gradients early on, step."""
        acc, lp = self.acc, self.loop
        if acc.sync_gradients:
            if lp.clip_grad > 0:
                acc.clip_grad_norm_(self.learner.parameters(), lp.clip_grad)
            if self.state.step < lp.freeze_last_layer_steps:  # the prototypes of every head
                for name, p in acc.unwrap_model(self.learner).named_parameters():
                    if ".last_layer." in name:
                        p.grad = None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, batches: Iterator[object], hp: StepHParams, monitor: bool) -> dict[str, float]:
        """One optimiser update over ``grad_accum`` micro-batches; returns scalars to log."""
        acc, accum = self.acc, self.loop.grad_accum
        latest = partial(latest_checkpoint, self.run_dir)
        out: dict[str, float] = {}
        totals: dict[str, float] = {}
        for micro in range(accum):
            views = self._views(next(batches), micro)
            with acc.accumulate(self.learner), acc.autocast():
                result = self.learner(views, self.teacher, hp.teacher_temp, monitor and not out)
                out |= result.monitors
                check_loss(result.loss, self.state.step, latest)
                acc.backward(result.loss)
                self._update()
            for name, value in {"loss": result.loss.detach(), **result.terms}.items():
                key = name if name == "loss" else f"loss/{name}"
                totals[key] = totals.get(key, 0.0) + value.item()
        unwrapped = acc.unwrap_model(self.learner)
        ema_update(self.teacher, unwrapped.student, hp.momentum)
        if monitor:  # logged: the global batch's mean, not the main process's share
            totals = self._mean_over_processes(totals)
        out |= {k: v / accum for k, v in totals.items()}
        if monitor:
            out |= unwrapped.objective.state_monitors()
        return out

    def _mean_over_processes(self, values: dict[str, float]) -> dict[str, float]:
        if self.acc.num_processes == 1:
            return values
        keys = sorted(values)
        vector = torch.tensor(
            [values[k] for k in keys], dtype=torch.float64, device=self.acc.device
        )
        return dict(zip(keys, self.acc.reduce(vector, "mean").tolist()))

    def fit(self) -> dict[str, float]:
        """Resume (if there is a checkpoint to), train to ``max_steps``; the last scalars."""
        acc = self.acc
        self.resume()
        if acc.is_main_process:
            (self.run_dir / CONFIG_FILE).write_text(self.parts.config_yaml)
            truncate_history(self.run_dir / "train_log.jsonl", self.state.step)  # each step once
        self.learner.train()
        bar = tqdm(
            total=self.loop.max_steps,
            initial=self.state.step,
            disable=not (acc.is_main_process and self.loop.progress),
            dynamic_ncols=True,
            desc="train",
        )
        try:
            return self._loop(batches_of(self.loader()), bar)
        finally:  # also when a guard stops the run: close the trackers, leave the process group
            bar.close()
            acc.end_training()

    def _log(self, step: int, hp: StepHParams, scalars: dict[str, float], bar: tqdm) -> dict:
        acc = self.acc
        last = {**dataclasses.asdict(hp), **scalars, "step": step}
        acc.log({k: v for k, v in last.items() if k != "step"}, step=step)
        bar.set_postfix(loss=f"{scalars['loss']:.4f}", lr=f"{hp.lr:.2e}", m=f"{hp.momentum:.4f}")
        if acc.is_main_process:
            with (self.run_dir / "train_log.jsonl").open("a") as f:
                f.write(json.dumps(last) + "\n")
        return last

    def _loop(self, batches: Iterator[object], bar: tqdm) -> dict[str, float]:
        lp, acc = self.loop, self.acc
        last: dict[str, float] = {}
        while self.state.step < lp.max_steps:
            step = self.state.step
            hp = self.parts.schedules.at(step)
            self._set_hparams(hp)
            monitor = step % lp.log_every == 0 or step == lp.max_steps - 1
            scalars = self.step(batches, hp, monitor)
            self.state.step += 1
            bar.update(1)
            if monitor:
                last = self._log(step, hp, scalars, bar)
                if self.parts.collapse.watch(last, acc.device, acc.is_main_process, self.run_dir):
                    break  # trainer.on_collapse=stop: the collapsed step is never saved
            done = self.state.step == lp.max_steps
            evaluated: dict[str, float] = {}
            new_best = False
            if lp.eval_every > 0 and (done or self.state.step % lp.eval_every == 0):
                evaluated, new_best = self._periodic_eval(step)
                last |= evaluated
            if new_best or done or (lp.save_every > 0 and self.state.step % lp.save_every == 0):
                self._save(evaluated if new_best else None)
        return last

    def _save(self, best: dict[str, float] | None) -> None:
        """Save a checkpoint at this step, sparing the best from rotation; ``best``: the scalars
        that make it the new best, recorded once the save is complete."""
        keep = self.best.keep() if self.best is not None else ()
        ckpt = save_checkpoint(
            self.acc,
            self.run_dir,
            self.parts.checkpoint,
            self.parts.config_yaml,
            self.loop.keep_last,
            keep=keep,
        )
        if best is not None and self.best is not None:
            self.best.record(ckpt, self.state.step, best)

    def _periodic_eval(self, step: int) -> tuple[dict[str, float], bool]:
        """``trainer.eval_every``: the evaluation of the teacher's backbone, on the main process;
        its scalars (main process) and, on every process, whether they make a new best."""
        scalars: dict[str, float] = {}
        if self.evaluate is None:
            return scalars, False
        backbone = self.parts.eval_backbone()  # every process: FSDP gathers the teacher here
        if self.acc.is_main_process and backbone is not None:
            scalars = self.evaluate(backbone, step, self.acc)
            log.info("step %d: %s", self.state.step, scalars)
        self.acc.wait_for_everyone()
        return scalars, self.best is not None and self.best.is_new_best(scalars)


def batches_of(loader: DataLoader) -> Iterator[object]:
    """The loader's collated batches (the per-sample transform's output), endlessly."""
    for views, _ in loader:
        yield views
