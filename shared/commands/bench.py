"""``spikelink bench``: how fast the SNN and its CNN twin run, before and after the fast
path, in one process and through the three-process link.

Measures, on real frames of ``--data`` at the models' evaluation crop:
- encode and decode time per stereo frame of both models, reference path and fast path,
  at each of ``--threads`` and at a batch of ``--batch-study`` frames (one thread);
- per-stage times of the fast path (encode, channel, decode, serialisation, transport);
- the three-process link's frames/s with each model (``--link-repeat`` passes);
- in-process evaluation throughput (stereo frames/s, ``--batch`` frames at a time);
- the fast path's mean-view PSNR difference from the reference path at ``--snrs``.

Writes ``bench.json`` into ``--out``: ``snn_over_twin`` ((encode + decode) time ratio at
one thread, fast path), ``link_fps``, ``twin_link_fps``, ``psnr_delta_db`` (largest
difference), ``device``, ``precision``, ``stages`` and every timing row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import torch

from shared.assets import BUNDLED_SNN, BUNDLED_TWIN, SAMPLE_PAIRS
from shared.bench import (
    evaluation_fps,
    link_fps,
    model_timing,
    psnr_check,
    stage_times,
)
from shared.commands.common import (
    add_inference_arguments,
    attach_negative_values,
    fail,
    inference_config,
    parse_snrs,
    write_json,
)
from shared.config import InferenceConfig
from shared.data.frames import load_frames
from shared.errors import ConfigError, SpikeLinkError
from shared.model.checkpoint import git_commit, load_model
from shared.model.inference import (
    accelerate,
    batch_frames,
    describe,
    resolve_device,
    resolve_precision,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=str(BUNDLED_SNN), help="the SNN checkpoint")
    p.add_argument("--twin", default=str(BUNDLED_TWIN), help="its CNN twin")
    p.add_argument("--data", default=str(SAMPLE_PAIRS), help="stereo pairs")
    p.add_argument("--root", default=None, help="root of the paths in a split file")
    p.add_argument("--frames", type=int, default=0, help="use the first N pairs")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per figure")
    p.add_argument("--threads", default="1,2", help="torch threads to time at")
    p.add_argument(
        "--batch-study",
        type=int,
        default=4,
        help="also time a batch of this many frames at one thread (0: skip)",
    )
    p.add_argument(
        "--link-repeat", type=int, default=2, help="passes of the link over the pairs"
    )
    p.add_argument(
        "--eval-frames",
        type=int,
        default=0,
        help="frames of the throughput run (0: 8 batches, at least the pairs)",
    )
    p.add_argument("--snrs", default="0,10", help="SNRs (dB) of the PSNR check")
    p.add_argument("--out", default="runs/bench", help="folder for bench.json")
    add_inference_arguments(p)
    return p


def thread_counts(text: str) -> list[int]:
    """The thread counts of ``--threads``: positive integers, comma-separated."""
    parts = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() and int(t) > 0 for t in parts):
        raise ConfigError(f"--threads: got {text!r}; allowed: counts like '1,2'")
    return [int(t) for t in parts]


def timing_rows(
    paths: list[str], settings: InferenceConfig, frames, args: argparse.Namespace
) -> list[dict]:
    """Encode / decode rows of the checkpoints: every thread count and the batch study,
    all on the reference path first (the fast path's memory setting of
    :func:`~shared.model.inference.keep_freed_memory` lasts for the process)."""
    rows = []
    for label, fast in (("reference", False), ("fast", True)):
        for path in paths:
            model, cfg = load_model(path)
            accelerate(model, dataclasses.replace(settings, fast=fast))
            runs = [(t, 1) for t in thread_counts(args.threads)]
            if args.batch_study > 1:
                runs.append((1, args.batch_study))
            for threads, batch in runs:
                torch.set_num_threads(threads)
                timing = model_timing(model, frames, batch, args.repeats)
                rows.append(
                    {
                        "system": cfg.model.kind,
                        "path": label,
                        "threads": threads,
                        "batch": batch,
                        **timing,
                        "total_ms": timing["encode_ms"] + timing["decode_ms"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def row(rows: list[dict], system: str, path: str, threads: int = 1) -> dict:
    return next(
        r
        for r in rows
        if (r["system"], r["path"], r["threads"], r["batch"])
        == (system, path, threads, 1)
    )


def run_bench(args: argparse.Namespace) -> dict:
    settings = inference_config(args)
    device = resolve_device(settings.device)
    threads = thread_counts(args.threads)
    snn, cfg = load_model(args.model)
    twin, twin_cfg = load_model(args.twin)
    if (cfg.model.kind, twin_cfg.model.kind) != ("snn", "cnn"):
        raise ConfigError(
            f"--model must be an SNN and --twin a CNN twin; got {cfg.model.kind} and "
            f"{twin_cfg.model.kind}"
        )
    size = (cfg.data.image_height, cfg.data.image_width)
    frames = load_frames(args.data, args.root, *size, args.frames)
    rows = timing_rows([args.model, args.twin], settings, frames, args)
    torch.set_num_threads(max(threads))
    fast_snn = accelerate(load_model(args.model)[0], settings)
    fast_twin = accelerate(load_model(args.twin)[0], settings)
    check = psnr_check(
        accelerate(snn, dataclasses.replace(settings, fast=False)),
        fast_snn,
        frames,
        parse_snrs(args.snrs),
    )
    out = Path(args.out)
    links = {
        name: link_fps(
            path,
            args.data,
            args.root,
            args.link_repeat,
            size,
            settings,
            out / f"link_{name}",
        )
        for name, path in (("snn", args.model), ("twin", args.twin))
    }
    batch = batch_frames(settings)
    eval_frames = args.eval_frames or max(8 * batch, len(frames))
    passes = -(-eval_frames // len(frames))
    ratio = {
        p: row(rows, "snn", p)["total_ms"] / row(rows, "cnn", p)["total_ms"]
        for p in ("reference", "fast")
    }
    precision = resolve_precision(settings.precision, device)
    return {
        "name": "spikelink-bench",
        "model": args.model,
        "twin": args.twin,
        "data": args.data,
        "frames": len(frames),
        "image_size": list(size),
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "precision": str(precision).removeprefix("torch."),
        "fast_path": describe(fast_snn),
        "torch": torch.__version__,
        "commit": git_commit(),
        "snn_over_twin": ratio["fast"],
        "snn_over_twin_reference": ratio["reference"],
        "link_fps": links["snn"]["fps"],
        "twin_link_fps": links["twin"]["fps"],
        "link": links,
        "psnr_delta_db": max(abs(c["delta_db"]) for c in check),
        "psnr_check": check,
        "eval_batch": batch,
        "eval_fps": {
            "snn": evaluation_fps(fast_snn, frames, batch, passes),
            "twin": evaluation_fps(fast_twin, frames, batch, passes),
        },
        "stages": {
            "snn": stage_times(fast_snn, frames, args.repeats),
            "twin": stage_times(fast_twin, frames, args.repeats),
        },
        "timings": rows,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(attach_negative_values(argv, ("--snrs",)))
    try:
        report = run_bench(args)
    except SpikeLinkError as exc:
        return fail(str(exc))
    write_json(report, args.out, "bench.json")
    brief = {k: v for k, v in report.items() if k != "timings"}
    json.dump(brief, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
