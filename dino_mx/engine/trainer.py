"""The DINO training loop on Hugging Face Accelerate: one process, DDP or FSDP, CPU or GPU.

Step-based: ``trainer.max_steps`` optimiser updates, each of ``trainer.grad_accum`` micro-batches
of ``trainer.batch_size`` images per process. Every schedule is a closed form of the step, the
data stream is a function of the seed (:mod:`dino_mx.data.sampler`), and the checkpoint holds
everything else, so a resumed run continues bit for bit. What a step computes — DINOv1 or
DINOv2 — is the method's business (:mod:`dino_mx.engine.methods`); the loop is the same.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device, set_seed
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dino_mx.data import (
    InfiniteSampler,
    SeededAugment,
    build_augment,
    build_batch_augment,
    build_dataset,
)
from dino_mx.engine.checkpoint import (
    CheckpointParts,
    TrainState,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_temporaries,
    save_checkpoint,
)
from dino_mx.engine.collapse import build_collapse_guard
from dino_mx.engine.distill import build_distiller
from dino_mx.engine.divergence import check_loss
from dino_mx.engine.frozen_base import FrozenBase
from dino_mx.engine.methods import build_method
from dino_mx.engine.optim import Schedules, param_groups
from dino_mx.engine.resume import check_start, truncate_history
from dino_mx.engine.validate import validate_config
from dino_mx.eval.monitor import ValMonitor
from dino_mx.models import build_backbone
from dino_mx.models.adapters import apply_adapter
from dino_mx.models.param_report import log_parameters
from dino_mx.teacher import build_teacher, ema_update

log = logging.getLogger(__name__)


def resolve_precision(precision: str) -> str:
    """``trainer.precision`` to Accelerate's ``mixed_precision``: auto = bf16 on a GPU that has
    it, else fp32 (bf16 autocast on a CPU without bf16 units is ~15x slower)."""
    choices = {"auto", "fp32", "bf16", "fp16"}
    if precision not in choices:
        raise ValueError(f"trainer.precision '{precision}'; valid choices: {sorted(choices)}")
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return "no" if precision == "fp32" else precision


TRAINING_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _batches(loader: DataLoader) -> Iterator[Any]:
    """The per-sample transform's output, collated: crops (dinov1), [crops, masks] (dinov2)."""
    for views, _ in loader:
        yield views


class Trainer:
    """Builds every piece from the config and runs the loop. Use :func:`train`."""

    def __init__(self, cfg: DictConfig, run_dir: Path, accelerator: Accelerator):
        self.cfg, self.run_dir, self.acc = cfg, run_dir, accelerator
        t = cfg.trainer
        self.dataset = build_dataset(cfg.data, "train")
        channels = self.dataset.channels
        self.transform = build_augment(cfg.augment, self.dataset, cfg.data.mean, cfg.data.std)
        # augment.backend=batched: the loader collates raw images, the crops are made here.
        self.batch_augment = build_batch_augment(cfg.augment, channels, cfg.data.mean, cfg.data.std)
        if self.batch_augment is not None:
            self.batch_augment.to(accelerator.device)
        self.method = build_method(cfg.method)
        backbone = build_backbone(cfg.model, channels)
        self.method.prepare_backbone(backbone)
        # adapter=lora/freeze: the frozen base is written once to RUN/base, not per checkpoint.
        self.base = FrozenBase(run_dir) if cfg.adapter.name != "full" else None
        if self.base is not None:
            self.base.attach(backbone.model, resume=t.resume, is_main=accelerator.is_main_process)
        backbone = apply_adapter(backbone, cfg.adapter)
        # distill=teacher: a frozen teacher outside the student, a projector inside it.
        distill = build_distiller(
            cfg.distill,
            channels,
            backbone.embed_dim,
            cfg.augment,
            accelerator.device,
            TRAINING_DTYPES[accelerator.mixed_precision],
        )
        self.distiller, projector = distill if distill is not None else (None, None)
        self.method.project = self.distiller is not None
        student = self.method.build_student(backbone, projector)
        self.transform = self.method.wrap_transform(
            self.transform, backbone, cfg.augment.global_size
        )
        heads = nn.ModuleList(
            m for n, m in student.named_children() if n not in ("backbone", "projector")
        )
        report_dir = run_dir if accelerator.is_main_process else None
        log_parameters(backbone.model, heads, report_dir, projector)
        # The method's loss module(s): their teacher centres are checkpointed as "loss".
        self.loss_fn = self.method.losses
        self.loss_fn.to(accelerator.device)
        o, m = cfg.optim, cfg.method
        groups = param_groups(student, m.layerwise_decay, m.patch_embed_lr_mult)
        optimizer = torch.optim.AdamW(groups, lr=0.0, betas=tuple(o.betas))
        if t.compile:
            student = torch.compile(student)
        self.student, self.optimizer = accelerator.prepare(student, optimizer)
        # After prepare: DDP has broadcast rank 0's weights, so every rank's teacher starts equal.
        unwrapped = accelerator.unwrap_model(self.student)
        self.teacher = build_teacher(unwrapped, share_frozen=True)
        student_state, teacher_state = unwrapped, self.teacher
        if self.base is not None:  # checkpoints leave the frozen weights to RUN/base
            student_state, teacher_state = self.base.install(unwrapped, self.teacher)
        self.state = TrainState()
        self.parts = CheckpointParts(
            student_state, teacher_state, self.loss_fn, self.optimizer, self.state, self.base
        )
        self.schedules = Schedules(cfg)
        self.freeze_last_layer_steps = int(o.freeze_last_layer_ratio * t.max_steps)
        self.config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        # trainer.eval_every: k-NN and attention / PCA images of val, on the main process.
        self.monitor = ValMonitor(cfg.data, cfg.augment.global_size, t.tb_images)
        # trainer.on_collapse: warn about (or stop at) a teacher output gone uniform or one-hot.
        self.collapse = build_collapse_guard(t, cfg.method, cfg.optim)

    def _loader(self) -> DataLoader:
        t = self.cfg.trainer
        start = self.state.step * t.grad_accum * t.batch_size
        sampler = InfiniteSampler(
            len(self.dataset), t.seed, self.acc.process_index, self.acc.num_processes, start
        )
        workers = self.cfg.data.num_workers
        return DataLoader(
            SeededAugment(self.dataset, self.transform),
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=workers,
            drop_last=True,
            pin_memory=self.acc.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            # Its own generator: creating the iterator must not draw from the global RNG, or a
            # resumed run's dropout (LoRA, drop path) would differ from an uninterrupted one.
            generator=torch.Generator().manual_seed(t.seed + self.state.step),
        )

    def resume(self) -> None:
        ckpt = check_start(self.cfg, self.run_dir)  # train() made any refusal before writing
        if self.acc.is_main_process:
            remove_temporaries(self.run_dir)  # left by an interrupted save
        if ckpt is None:
            if self.cfg.trainer.resume:
                log.warning("trainer.resume=true but %s has no checkpoint: starting", self.run_dir)
            return
        load_checkpoint(self.acc, ckpt, self.parts)
        log.info("resumed from %s at step %d", ckpt, self.state.step)

    def _set_hparams(self, values: dict[str, float]) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = values["lr"] * group["lr_scale"]
            group["weight_decay"] = values["wd"] if group["apply_wd"] else 0.0

    def _crop(self, images: list[Tensor], micro: int) -> list[Tensor]:
        """``augment.backend=batched``: the multi-crop views of a collated ``[images]`` batch.

        The RNG is seeded from the seed, the micro-batch and the process, so a resumed run
        draws the same crops as an uninterrupted one and no two processes draw alike.
        """
        t, acc = self.cfg.trainer, self.acc
        index = (self.state.step * t.grad_accum + micro) * acc.num_processes + acc.process_index
        devices = [acc.device] if acc.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(t.seed * 1_000_003 + index)
            return self.batch_augment(images[0])  # type: ignore[misc]

    def _step(self, batches: Iterator[Any], hp: dict[str, float], monitor: bool) -> dict:
        """One optimiser update over ``grad_accum`` micro-batches; returns scalars to log."""
        acc, step, accum = self.acc, self.state.step, self.cfg.trainer.grad_accum
        out: dict[str, float] = {}
        totals: dict[str, float] = {}
        for micro in range(accum):
            batch = send_to_device(next(batches), acc.device, non_blocking=True)
            if self.batch_augment is not None:
                batch = self.method.map_crops(batch, partial(self._crop, micro=micro))
            with acc.accumulate(self.student), acc.autocast():
                result = self.method(
                    self.student, self.teacher, batch, hp["teacher_temp"], monitor and not out
                )
                out |= result.monitors
                loss, terms = result.loss, result.terms
                if self.distiller is not None:
                    distill = self.distiller(result.crops, result.projected)
                    loss = loss + self.cfg.distill.weight * distill
                    terms = {**terms, "self": result.loss.detach(), "distill": distill.detach()}
                check_loss(loss, step, partial(latest_checkpoint, self.run_dir))
                acc.backward(loss)
                if acc.sync_gradients:
                    if self.cfg.optim.clip_grad > 0:
                        acc.clip_grad_norm_(self.student.parameters(), self.cfg.optim.clip_grad)
                    if step < self.freeze_last_layer_steps:  # the prototypes of every head
                        for name, p in acc.unwrap_model(self.student).named_parameters():
                            if ".last_layer." in name:
                                p.grad = None
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            for name, value in {"loss": loss.detach(), **terms}.items():
                key = name if name == "loss" else f"loss/{name}"
                totals[key] = totals.get(key, 0.0) + value.item()
        ema_update(self.teacher, acc.unwrap_model(self.student), hp["momentum"])
        out |= {k: v / accum for k, v in totals.items()}
        if monitor:
            out |= self.method.state_monitors()
        return out

    def fit(self) -> dict[str, float]:
        """Train to ``trainer.max_steps``; returns the last logged scalars."""
        t, acc = self.cfg.trainer, self.acc
        self.resume()
        if acc.is_main_process:
            (self.run_dir / "config.yaml").write_text(self.config_yaml)
            truncate_history(self.run_dir / "train_log.jsonl", self.state.step)  # each step once
        self.student.train()
        bar = tqdm(
            total=t.max_steps,
            initial=self.state.step,
            disable=not (acc.is_main_process and t.progress),
            dynamic_ncols=True,
            desc="train",
        )
        try:
            return self._loop(_batches(self._loader()), bar)
        finally:  # also when a guard stops the run: close the trackers, leave the process group
            bar.close()
            acc.end_training()

    def _loop(self, batches: Iterator[Any], bar: tqdm) -> dict[str, float]:
        t, acc = self.cfg.trainer, self.acc
        history = self.run_dir / "train_log.jsonl"
        last: dict[str, float] = {}
        while self.state.step < t.max_steps:
            step = self.state.step
            hp = self.schedules.at(step)
            self._set_hparams(hp)
            monitor = step % t.log_every == 0 or step == t.max_steps - 1
            scalars = self._step(batches, hp, monitor)
            self.state.step += 1
            bar.update(1)
            if monitor:
                last = {**hp, **scalars, "step": step}
                acc.log({k: v for k, v in last.items() if k != "step"}, step=step)
                bar.set_postfix(
                    loss=f"{scalars['loss']:.4f}", lr=f"{hp['lr']:.2e}", m=f"{hp['momentum']:.4f}"
                )
                if acc.is_main_process:
                    with history.open("a") as f:
                        f.write(json.dumps(last) + "\n")
                if self.collapse.watch(last, acc.device, acc.is_main_process, self.run_dir):
                    break  # trainer.on_collapse=stop: the collapsed step is never saved
            done = self.state.step == t.max_steps
            if t.eval_every > 0 and (done or self.state.step % t.eval_every == 0):
                last |= self._periodic_eval(step)
            if done or (t.save_every > 0 and self.state.step % t.save_every == 0):
                save_checkpoint(acc, self.run_dir, self.parts, self.config_yaml, t.keep_last)
        return last

    def _periodic_eval(self, step: int) -> dict[str, float]:
        """``trainer.eval_every``: the teacher's k-NN on val and its TensorBoard images."""
        acc, knn = self.acc, {}
        if acc.is_main_process:
            knn = self.monitor.knn(self.teacher.backbone, acc.device)
            acc.log(knn, step=step)
            writer = acc.get_tracker("tensorboard", unwrap=True)
            self.monitor.log_images(writer, self.teacher.backbone, step, acc.device)
            log.info("step %d: %s", self.state.step, knn)
        acc.wait_for_everyone()
        return knn


def make_accelerator(cfg: DictConfig, run_dir: Path) -> Accelerator:
    """Accelerator with this run's precision, accumulation and TensorBoard folder."""
    acc = Accelerator(
        # Without cpu=True, Accelerate ignores torchrun's WORLD_SIZE on a machine without CUDA.
        cpu=not torch.cuda.is_available(),
        mixed_precision=resolve_precision(cfg.trainer.precision),
        gradient_accumulation_steps=cfg.trainer.grad_accum,
        log_with="tensorboard",
        project_dir=str(run_dir),
    )
    acc.init_trackers("tb")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file otherwise
    return acc


def train(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Run (or resume) the DINO training described by ``cfg`` in ``run_dir``."""
    validate_config(cfg)  # values, ranges, keys added with +: before anything is built
    check_start(cfg, run_dir)  # a refused start (checkpoints, changed config) writes nothing
    set_seed(cfg.trainer.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg, run_dir)
    trainer = Trainer(cfg, run_dir, accelerator)
    return trainer.fit()


__all__ = ["Trainer", "list_checkpoints", "param_groups", "resolve_precision", "train"]
