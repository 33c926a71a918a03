"""The training loop in phases: set-up, step, validation, checkpoint (after nanoGPT's
train.py). Under DDP every phase that can fail on one rank ends in a vote of all ranks
(:func:`trainer.distributed.together`), so that one failing rank stops them all."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from shared.channel.rng import generator_for
from shared.config import Config, dump_config
from shared.data.datasets import (
    EvalPairs,
    TrainBatches,
    training_sources,
    validation_pairs,
)
from shared.data.frames import Frame
from shared.errors import ConfigError, TrainingError
from shared.evaluation import evaluate
from shared.model.checkpoint import (
    evaluated_weights,
    git_commit,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
)
from shared.model.inference import fast_bfloat16
from shared.model.jscc import StereoJSCC, parameter_count
from shared.model.registry import build_model
from shared.signals import StopFlag
from trainer.distill import FeatureDistiller
from trainer.distributed import Runtime, any_rank, together
from trainer.ema import WeightAverage
from trainer.hybrid import init_from_twin
from trainer.logs import MetricsLog
from trainer.loss import stereo_loss
from trainer.schedule import learning_rate

log = logging.getLogger("trainer")

#: Log steps in a row at which a layer may be silent before training stops.
SILENT_PATIENCE = 3
#: ``train.memory_format``: layout of the convolution weights and the image batches.
#: channels_last (NHWC) makes oneDNN's CPU convolutions faster (docs/RESULTS.md).
MEMORY_FORMATS = {
    "channels_last": torch.channels_last,
    "contiguous": torch.contiguous_format,
}


def mixed_precision(
    device: torch.device, precision: str
) -> torch.autocast | nullcontext:
    """The autocast context of the forward pass and the loss for ``train.precision``.

    ``bfloat16`` autocasts on CUDA, and on a CPU with AMX, where the wide SNN trained
    1.5 times as fast as in float32 (docs/RESULTS.md). Elsewhere bfloat16 is emulated, or
    (AVX512-BF16 without AMX) no faster: the small twin trained at 11.6 stereo pairs/s
    under it against 18.4 in float32. There it trains in float32 and the log says so.
    Weights, optimiser state and validation stay float32.
    """
    if precision != "bfloat16":
        return nullcontext()
    if not fast_bfloat16(device):
        log.warning("bfloat16 is not faster on this CPU (no AMX): training in float32")
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm layer of ``model`` in eval mode (``train.freeze_bn``).

    The layers then normalise with their running statistics and no longer update them,
    while their scale and shift still learn: the training step computes the function
    that is evaluated, whatever the batch size. For a further stage of a converged model
    on batches smaller than it was trained with (docs/RESULTS.md).
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def load_val_frames(cfg: Config) -> list[Frame]:
    """The validation split with the evaluation crop (empty without ``data.val_split``)."""
    if not cfg.data.val_split:
        return []
    pairs = EvalPairs(
        validation_pairs(cfg.data), cfg.data.image_height, cfg.data.image_width
    )
    return [
        Frame(i, item["name"], item["left"], item["right"])
        for i, item in enumerate(pairs)
    ]


def validate(model: StereoJSCC, frames: list[Frame], cfg: Config) -> dict[str, Any]:
    """PSNR / MS-SSIM on the validation frames at ``train.val_snrs`` (training channel)."""
    records = evaluate(
        model,
        frames,
        cfg.train.val_snrs,
        model.channel,
        cfg.train.seed,
        measure_energy=False,
    )
    psnrs = [r["psnr_db"]["mean"] for r in records]
    return {
        "psnr_mean": sum(psnrs) / len(psnrs),
        "per_snr": [
            {
                "snr_db": r["snr_db"],
                "psnr_db": r["psnr_db"],
                "ms_ssim": r["ms_ssim"],
                "firing_rate": r["firing_rate"],
            }
            for r in records
        ],
    }


def _batch_snr(cfg: Config, runtime: Runtime, step: int, batch: int) -> torch.Tensor:
    g = generator_for(cfg.train.seed, "snr", runtime.rank, step)
    u = torch.rand(batch, generator=g)
    return cfg.train.snr_min_db + (cfg.train.snr_max_db - cfg.train.snr_min_db) * u


def _check_loss_fits_crop(cfg: Config) -> None:
    if (
        cfg.train.loss == "mse_msssim"
        and min(cfg.data.crop_height, cfg.data.crop_width) < 97
    ):
        raise ConfigError(
            "config key 'train.loss': 'mse_msssim' needs data.crop_height and "
            "data.crop_width >= 97 (MS-SSIM with win_size 7)"
        )


def _check_silent(
    rates: dict[str, torch.Tensor], silent_counts: dict[str, int]
) -> None:
    for name, rate in rates.items():
        silent_counts[name] = (
            silent_counts.get(name, 0) + 1 if float(rate) == 0.0 else 0
        )
    dead = [n for n, c in silent_counts.items() if c >= SILENT_PATIENCE]
    if dead:
        raise TrainingError(
            f"layers silent for {SILENT_PATIENCE} log steps in a row: {', '.join(dead)}"
        )


class TrainingRun:
    """The state of one training run, set up once and then advanced step by step.

    ``step`` counts the optimiser steps done; ``best`` and ``metrics`` are the best
    validation PSNR so far and the last validation. Only rank 0 logs, validates and
    saves. ``resume`` is a loaded checkpoint to continue from exactly (batches, SNRs and
    channel noise depend only on the seed and the step).
    """

    def __init__(
        self, cfg: Config, runtime: Runtime, resume: dict[str, Any] | None
    ) -> None:
        tc = cfg.train
        _check_loss_fits_crop(cfg)
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        self.cfg, self.runtime, self.out_dir = cfg, runtime, Path(tc.out_dir)
        self.layout = MEMORY_FORMATS[tc.memory_format]
        self.model = build_model(cfg.model, cfg.channel).to(
            runtime.device, memory_format=self.layout
        )
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.step, self.best, self.metrics = self._starting_point(resume)
        self.average = self._weight_average(resume)
        self.distiller = (
            FeatureDistiller(self.model, tc.distill_from, cfg, runtime.device)
            if tc.distill_from
            else None
        )
        self.net: nn.Module = self.model
        pairs, mono = training_sources(cfg.data)
        self.loader = DataLoader(
            TrainBatches(pairs, mono, cfg.data, tc.batch_size, tc.seed, runtime.rank),
            batch_size=None,
            sampler=range(self.step, tc.steps),
            num_workers=cfg.data.workers,
        )
        self.val_frames = load_val_frames(cfg) if runtime.is_main else []
        self.mlog = (
            MetricsLog(
                self.out_dir,
                ("train", "val"),
                None if resume is None else resume["step"],
            )
            if runtime.is_main
            else None
        )
        self.validates_start = resume is None and bool(tc.init_from)
        self.autocast = mixed_precision(runtime.device, tc.precision)
        self.silent_counts: dict[str, int] = {}
        self.commit = git_commit()  # the code this run started with, not HEAD at save
        self.t_start = time.monotonic()
        self.t_last, self.step_last = self.t_start, self.step
        if runtime.is_main:
            (self.out_dir / "config.yaml").write_text(dump_config(cfg))
            log.info(
                "model %s (%s, %d parameters), %d stereo pairs + %d mono photos, "
                "%d validation pairs, device %s, world %d",
                cfg.model.arch,
                cfg.model.kind,
                parameter_count(self.model),
                len(pairs),
                len(mono),
                len(self.val_frames),
                runtime.device,
                runtime.world,
            )

    def _starting_point(
        self, resume: dict[str, Any] | None
    ) -> tuple[int, float, dict[str, Any]]:
        """Load the resumed run's weights and optimiser (or ``train.init_from``'s
        weights); returns the step, best validation PSNR and last metrics."""
        if resume is not None:
            load_state_strict(self.model, resume["model"], "resume checkpoint")
            self.optimizer.load_state_dict(resume["optimizer"])
            return resume["step"], resume["best_metric"], resume["metrics"]
        tc = self.cfg.train
        if tc.init_from:
            init_from_twin(self.model, tc.init_from, self.cfg, tc.init_bn_scale)
        return 0, -math.inf, {}

    def _weight_average(self, resume: dict[str, Any] | None) -> WeightAverage | None:
        """The moving average of ``train.ema_decay`` (restored on resume), or None."""
        if not self.cfg.train.ema_decay:
            return None
        average = WeightAverage(self.model, self.cfg.train.ema_decay)
        if resume is not None and "ema" in resume:
            average.load_state_dict(resume["ema"], "resume checkpoint (ema)")
        return average

    def distribute(self) -> None:
        """Wrap the model for DDP (a collective: after every rank has set up)."""
        if self.runtime.ddp:
            self.net = DistributedDataParallel(self.model)

    # ------------------------------------------------------------------ step

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[dict, dict, float]:
        """The model and the loss on one batch; raises TrainingError for a non-finite
        loss. Returns the model output, the loss terms and the learning rate."""
        tc, device = self.cfg.train, self.runtime.device
        self.model.train()
        if tc.freeze_bn:
            freeze_batchnorm(self.model)
        lr = learning_rate(self.step, tc)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = {
            k: v.to(device, memory_format=self.layout, non_blocking=True)
            for k, v in batch.items()
        }
        snr = _batch_snr(self.cfg, self.runtime, self.step, batch["left"].shape[0])
        with self.autocast:
            out = self.net(
                batch["left"],
                batch["right"],
                snr.to(device),
                generator_for(tc.seed, "channel", self.runtime.rank, self.step),
            )
            terms = stereo_loss(out, batch, tc)
            if self.distiller is not None:
                terms["distill"] = self.distiller.loss(
                    batch["left"],
                    batch["right"],
                    snr.to(device),
                    generator_for(tc.seed, "channel", self.runtime.rank, self.step),
                )
                terms["loss"] = terms["loss"] + tc.distill_weight * terms["distill"]
        loss = float(terms["loss"].detach())
        if not math.isfinite(loss):
            raise TrainingError(
                f"non-finite loss {loss} at step {self.step}; "
                f"the last good checkpoint is {self.out_dir / 'last.pt'}"
            )
        return out, terms, lr

    def optimise(self, terms: dict[str, torch.Tensor]) -> None:
        """Backward pass (the gradient all-reduce under DDP) and the optimiser step."""
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.cfg.train.grad_clip
            )
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.model)
        self.step += 1

    def after_step(
        self, out: dict, terms: dict[str, torch.Tensor], lr: float
    ) -> dict[str, Any] | None:
        """On rank 0: log, validate and save when their intervals are due; returns the
        ``train`` record when one was logged."""
        tc, step = self.cfg.train, self.step
        if not self.runtime.is_main:
            return None
        record = None
        if step % tc.log_every == 0 or step == tc.steps:
            record = self.log_step(out["rates"], terms, lr)
        if self.val_frames and (step % tc.val_every == 0 or step == tc.steps):
            self.validate()
        if step % tc.ckpt_every == 0:
            self.save("last.pt")
        return record

    def log_step(
        self, rates: dict[str, torch.Tensor], terms: dict[str, torch.Tensor], lr: float
    ) -> dict[str, Any]:
        """One ``train`` record; raises TrainingError for a layer silent too long."""
        _check_silent(rates, self.silent_counts)
        now, tc = time.monotonic(), self.cfg.train
        mse = float(terms["mse"].detach())
        rate_values = [float(r) for r in rates.values()]
        record = {
            "step": self.step,
            "loss": float(terms["loss"].detach()),
            "mse": mse,
            "psnr": -10.0 * math.log10(max(mse, 1e-12)),
            "lr": lr,
            "pairs_per_s": tc.batch_size
            * self.runtime.world
            * (self.step - self.step_last)
            / max(now - self.t_last, 1e-9),
            "rate_mean": sum(rate_values) / len(rate_values),
            "rate_min": min(rate_values),
            "rate_max": max(rate_values),
            "elapsed_s": now - self.t_start,
            "rates": {k: float(v) for k, v in rates.items()},
        }
        if "distill" in terms:
            record["distill"] = float(terms["distill"].detach())
        self.t_last, self.step_last = now, self.step
        self.mlog.write("train", record)
        return record

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        """Validate the weights that are evaluated (the average when there is one) and
        keep them as ``best.pt`` when they beat the best so far."""
        evaluated = self.model if self.average is None else self.average.model
        self.metrics = validate(evaluated, self.val_frames, self.cfg)
        self.mlog.write(
            "val",
            {
                "step": self.step,
                "psnr_mean": self.metrics["psnr_mean"],
                "per_snr": self.metrics["per_snr"],
            },
        )
        log.info(
            "step %d validation: mean PSNR %.2f dB (%s)",
            self.step,
            self.metrics["psnr_mean"],
            ", ".join(
                f"{r['snr_db']:g} dB: {r['psnr_db']['mean']:.2f}"
                for r in self.metrics["per_snr"]
            ),
        )
        if self.metrics["psnr_mean"] > self.best:
            self.best = self.metrics["psnr_mean"]
            self.save("best.pt")

    def validate_start(self) -> None:
        """Validate the starting point of a hybrid or fine-tuning stage as step 0 (for a
        twin copied into the SNN: the conversion gap before any SNN step)."""
        if self.runtime.is_main and self.validates_start and self.val_frames:
            self.validate()

    # ------------------------------------------------------------------ checkpoints

    def save(self, name: str) -> None:
        extra = {"ema": self.average.state_dict()} if self.average is not None else {}
        save_checkpoint(
            self.out_dir / name,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": {"name": "warmup_cosine", "step": self.step},
                "config": self.cfg.to_dict(),
                "step": self.step,
                "best_metric": self.best,
                "metrics": self.metrics,
                "git_commit": self.commit,
                **extra,
            },
        )

    def finish(self, status: str, stop: StopFlag) -> dict[str, Any]:
        """Save ``last.pt`` (and ``best.pt`` without validation), export ``model.pt``,
        and say how to continue a run that did not finish."""
        tc = self.cfg.train
        if self.runtime.is_main:
            self.save("last.pt")
            if not self.val_frames:
                self.save("best.pt")
            if (self.out_dir / "best.pt").exists():
                _export(self.out_dir)
            log.info(
                "%s at step %d of %d; best validation PSNR %.2f dB; outputs in %s",
                f"{status} ({stop.reason})" if status == "interrupted" else status,
                self.step,
                tc.steps,
                self.best,
                self.out_dir,
            )
            if status != "finished":
                log.info("continue with: --resume %s", self.out_dir / "last.pt")
        return {
            "status": status,
            "step": self.step,
            "best_metric": self.best,
            "out_dir": str(self.out_dir),
        }


def train(
    cfg: Config,
    runtime: Runtime,
    stop: StopFlag,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train until ``train.steps``, the time budget, or ``stop`` (set by SIGINT / SIGTERM:
    the current step ends and ``last.pt`` is saved); returns a summary dict.

    Each phase that can fail on one rank is run through :func:`together`, so that an
    error anywhere stops every rank at the same point instead of leaving the others in
    a collective.
    """
    run = together(runtime, lambda: TrainingRun(cfg, runtime, resume))
    run.distribute()
    together(runtime, run.validate_start)
    tc, status = cfg.train, "finished"
    batches: Iterator[dict[str, torch.Tensor]] = iter(run.loader)
    with tqdm(
        total=tc.steps,
        initial=run.step,
        disable=not runtime.is_main,
        unit="step",
        dynamic_ncols=True,
    ) as bar:
        while run.step < tc.steps:
            batch = together(runtime, lambda: next(batches))
            out, terms, lr = together(runtime, lambda: run.forward(batch))
            run.optimise(terms)
            record = together(runtime, lambda: run.after_step(out, terms, lr))
            bar.update(1)
            if record is not None:
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}",
                    psnr=f"{record['psnr']:.2f}",
                    rate=f"{record['rate_mean']:.3f}",
                )
            over_budget = (
                tc.max_minutes > 0
                and time.monotonic() - run.t_start > 60.0 * tc.max_minutes
            )
            if any_rank(runtime, over_budget or stop.is_set):
                status = "interrupted" if stop.is_set else "paused"
                break
    return run.finish(status, stop)


def _export(out_dir: Path) -> None:
    """Write ``model.pt``: the best weights (their average when ``train.ema_decay`` is
    set) with config and metrics, without the optimiser."""
    ckpt = load_checkpoint(out_dir / "best.pt")
    slim = {k: v for k, v in ckpt.items() if k not in ("optimizer", "format", "ema")}
    slim["model"] = evaluated_weights(ckpt)
    save_checkpoint(out_dir / "model.pt", slim)
