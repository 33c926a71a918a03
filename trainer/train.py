"""The training loop: one readable function, in the manner of nanoGPT's train.py."""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from shared.channel.rng import generator_for
from shared.config import Config, ConfigError, dump_config
from shared.data.datasets import (
    EvalPairs,
    TrainBatches,
    training_sources,
    validation_pairs,
)
from shared.evaluation import Frame, evaluate
from shared.model.checkpoint import (
    evaluated_weights,
    git_commit,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
)
from shared.model.jscc import StereoJSCC, parameter_count
from shared.model.registry import build_model
from shared.signals import StopFlag
from trainer.distributed import Runtime, any_rank
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


def cpu_has_bfloat16() -> bool:
    """Whether this CPU's oneDNN computes bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def mixed_precision(
    device: torch.device, precision: str
) -> torch.autocast | nullcontext:
    """The autocast context of the forward pass and the loss for ``train.precision``.

    ``bfloat16`` autocasts on CUDA, and on a CPU whose oneDNN has native bfloat16
    (AVX512-BF16 or AMX), where the wide SNN trains 1.5 times as fast as in float32
    (docs/RESULTS.md). A CPU without it would emulate bfloat16 slowly, so it trains in
    float32 and the log says so. Weights, optimiser state and validation stay float32.
    """
    if precision != "bfloat16":
        return nullcontext()
    if device.type == "cpu" and not cpu_has_bfloat16():
        log.warning("this CPU has no native bfloat16: training in float32")
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


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, silent layer); the message says why."""


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


def _checkpoint(
    commit: str,
    model: StereoJSCC,
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    step: int,
    best: float,
    metrics: dict[str, Any],
    average: WeightAverage | None,
) -> dict[str, Any]:
    extra = {"ema": average.state_dict()} if average is not None else {}
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"name": "warmup_cosine", "step": step},
        "config": cfg.to_dict(),
        "step": step,
        "best_metric": best,
        "metrics": metrics,
        "git_commit": commit,
        **extra,
    }


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


def train(
    cfg: Config,
    runtime: Runtime,
    stop: StopFlag,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train until ``train.steps``, the time budget, or ``stop`` (set by SIGINT / SIGTERM:
    the current step ends and ``last.pt`` is saved); returns a summary dict.

    ``resume`` is a loaded checkpoint to continue from (exactly: batches, SNRs and channel
    noise depend only on the seed and the step).
    """
    tc = cfg.train
    out_dir = Path(tc.out_dir)
    if tc.loss == "mse_msssim" and min(cfg.data.crop_height, cfg.data.crop_width) < 97:
        raise ConfigError(
            "config key 'train.loss': 'mse_msssim' needs data.crop_height and "
            "data.crop_width >= 97 (MS-SSIM with win_size 7)"
        )
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    layout = MEMORY_FORMATS[tc.memory_format]
    model = build_model(cfg.model, cfg.channel).to(runtime.device, memory_format=layout)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
    )
    start, best, metrics = 0, -math.inf, {}
    if resume is not None:
        load_state_strict(model, resume["model"], "resume checkpoint")
        optimizer.load_state_dict(resume["optimizer"])
        start, best, metrics = resume["step"], resume["best_metric"], resume["metrics"]
    elif tc.init_from:
        init_from_twin(model, tc.init_from, cfg, tc.init_bn_scale)
    average = WeightAverage(model, tc.ema_decay) if tc.ema_decay > 0 else None
    if average is not None and resume is not None and "ema" in resume:
        average.load_state_dict(resume["ema"], "resume checkpoint (ema)")
    net = DistributedDataParallel(model) if runtime.ddp else model

    pairs, mono = training_sources(cfg.data)
    batches = TrainBatches(pairs, mono, cfg.data, tc.batch_size, tc.seed, runtime.rank)
    loader = DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, tc.steps),
        num_workers=cfg.data.workers,
    )
    val_frames = load_val_frames(cfg) if runtime.is_main else []
    mlog = (
        MetricsLog(out_dir, ("train", "val"), fresh=resume is None)
        if runtime.is_main
        else None
    )
    if runtime.is_main:
        (out_dir / "config.yaml").write_text(dump_config(cfg))
        log.info(
            "model %s (%s, %d parameters), %d stereo pairs + %d mono photos, "
            "%d validation pairs, device %s, world %d",
            cfg.model.arch,
            cfg.model.kind,
            parameter_count(model),
            len(pairs),
            len(mono),
            len(val_frames),
            runtime.device,
            runtime.world,
        )
    autocast = mixed_precision(runtime.device, tc.precision)
    silent_counts: dict[str, int] = {}
    t_start = time.monotonic()
    t_last, step_last, step = time.monotonic(), start, start
    status = "finished"
    bar = tqdm(
        total=tc.steps,
        initial=start,
        disable=not runtime.is_main,
        unit="step",
        dynamic_ncols=True,
    )

    commit = git_commit()  # the code this run started with, not HEAD at save time

    def save(name: str) -> None:
        save_checkpoint(
            out_dir / name,
            _checkpoint(commit, model, optimizer, cfg, step, best, metrics, average),
        )

    def validate_and_keep_best() -> None:
        nonlocal best, metrics
        metrics = validate(model if average is None else average.model, val_frames, cfg)
        mlog.write(
            "val",
            {
                "step": step,
                "psnr_mean": metrics["psnr_mean"],
                "per_snr": metrics["per_snr"],
            },
        )
        log.info(
            "step %d validation: mean PSNR %.2f dB (%s)",
            step,
            metrics["psnr_mean"],
            ", ".join(
                f"{r['snr_db']:g} dB: {r['psnr_db']['mean']:.2f}"
                for r in metrics["per_snr"]
            ),
        )
        if metrics["psnr_mean"] > best:
            best = metrics["psnr_mean"]
            save("best.pt")

    if resume is None and tc.init_from and val_frames:
        # The starting point of a hybrid or fine-tuning stage, as step 0 (for a twin
        # copied into the SNN this is the conversion gap before any SNN step).
        validate_and_keep_best()

    for step, batch in zip(range(start, tc.steps), loader):
        model.train()
        if tc.freeze_bn:
            freeze_batchnorm(model)
        lr = learning_rate(step, tc)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {
            k: v.to(runtime.device, memory_format=layout, non_blocking=True)
            for k, v in batch.items()
        }
        snr = _batch_snr(cfg, runtime, step, batch["left"].shape[0]).to(runtime.device)
        with autocast:
            out = net(
                batch["left"],
                batch["right"],
                snr,
                generator_for(tc.seed, "channel", runtime.rank, step),
            )
            terms = stereo_loss(out, batch, tc)
        loss_value, mse_value = (
            float(terms["loss"].detach()),
            float(terms["mse"].detach()),
        )
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"non-finite loss {loss_value} at step {step}; "
                f"the last good checkpoint is {out_dir / 'last.pt'}"
            )
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        if average is not None:
            average.update(model)
        step += 1
        bar.update(1)

        if runtime.is_main and (step % tc.log_every == 0 or step == tc.steps):
            now = time.monotonic()
            rates = out["rates"]
            _check_silent(rates, silent_counts)
            rate_values = [float(r) for r in rates.values()]
            record = {
                "step": step,
                "loss": loss_value,
                "mse": mse_value,
                "psnr": -10.0 * math.log10(max(mse_value, 1e-12)),
                "lr": lr,
                "pairs_per_s": tc.batch_size
                * runtime.world
                * (step - step_last)
                / max(now - t_last, 1e-9),
                "rate_mean": sum(rate_values) / len(rate_values),
                "rate_min": min(rate_values),
                "rate_max": max(rate_values),
                "elapsed_s": now - t_start,
                "rates": {k: float(v) for k, v in rates.items()},
            }
            t_last, step_last = now, step
            mlog.write("train", record)
            bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                psnr=f"{record['psnr']:.2f}",
                rate=f"{record['rate_mean']:.3f}",
            )
        if (
            runtime.is_main
            and val_frames
            and (step % tc.val_every == 0 or step == tc.steps)
        ):
            validate_and_keep_best()
        if runtime.is_main and step % tc.ckpt_every == 0:
            save("last.pt")
        over_budget = (
            tc.max_minutes > 0 and time.monotonic() - t_start > 60.0 * tc.max_minutes
        )
        if any_rank(runtime, over_budget or stop.is_set):
            status = "interrupted" if stop.is_set else "paused"
            break
    bar.close()
    if runtime.is_main:
        save("last.pt")
        if not val_frames:
            save("best.pt")
        if (out_dir / "best.pt").exists():
            _export(out_dir)
        log.info(
            "%s at step %d of %d; best validation PSNR %.2f dB; outputs in %s",
            f"{status} ({stop.reason})" if status == "interrupted" else status,
            step,
            tc.steps,
            best,
            out_dir,
        )
        if status != "finished":
            log.info("continue with: --resume %s", out_dir / "last.pt")
    return {
        "status": status,
        "step": step,
        "best_metric": best,
        "out_dir": str(out_dir),
    }


def _export(out_dir: Path) -> None:
    """Write ``model.pt``: the best weights (their average when ``train.ema_decay`` is
    set) with config and metrics, without the optimiser."""
    ckpt = load_checkpoint(out_dir / "best.pt")
    slim = {k: v for k, v in ckpt.items() if k not in ("optimizer", "format", "ema")}
    slim["model"] = evaluated_weights(ckpt)
    save_checkpoint(out_dir / "model.pt", slim)
