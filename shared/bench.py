"""Measurements of ``spikelink bench``: model timings, per-stage link costs, link frames/s,
batched evaluation throughput and the fast path's PSNR difference from the reference path.

Every time is a median over repeats after a warm-up pass, in milliseconds per stereo
frame (both views), on real frames of the source.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import zmq

from shared.channel.rng import generator_for
from shared.config import ChannelConfig, InferenceConfig, load_config
from shared.data.frames import Frame
from shared.errors import LinkError
from shared.evaluation import batch_through_channel, evaluate, stacked_views
from shared.link.hop import DecoderInput, send
from shared.link.launcher import free_tcp_port, run_link
from shared.link.messages import ChannelView, LatentView, SourceInfo
from shared.measure.activity import Activity
from shared.model.inference import inference_overrides
from shared.model.jscc import StereoJSCC
from shared.wire import decode_message

#: The SNR (dB, AWGN) of the decoder inputs and link messages the timings use.
BENCH_SNR_DB = 5.0


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def decoder_input(model: StereoJSCC, latent: torch.Tensor) -> DecoderInput:
    """Both views of every frame of ``latent [2, B, *shape]`` through the model's
    channel at :data:`BENCH_SNR_DB`, as frames 0..B-1 of seed 0."""
    seqs = range(latent.shape[1])
    return batch_through_channel(model, model.channel, latent, BENCH_SNR_DB, 0, seqs)


def model_timing(
    model: StereoJSCC, frames: Sequence[Frame], batch: int, repeats: int
) -> dict[str, float]:
    """Encode and decode time per stereo frame of ``model`` at batch ``batch``."""
    left, right = stacked_views([frames[0]] * batch)
    latent = model.encode(left, right)["latent"]
    received = decoder_input(model, latent)
    return {
        "encode_ms": median_ms(lambda: model.encode(left, right), repeats) / batch,
        "decode_ms": median_ms(lambda: model.decode(received), repeats) / batch,
    }


def link_messages(
    model: StereoJSCC, frame: Frame, latent: torch.Tensor
) -> tuple[list[bytes], float, float]:
    """The four link messages of one frame (two latents, two channel outputs), with the
    time (ms) of the channel maths and of their serialisation (encode and checked
    decode of each message)."""
    settings = dataclasses.replace(ChannelConfig(), snr_db=BENCH_SNR_DB)
    snr = torch.tensor([BENCH_SNR_DB])
    size = tuple(frame.left.shape[-2:])
    messages: list[bytes] = []
    channel_ms = serial_ms = 0.0
    for view in (0, 1):
        start = time.perf_counter()
        use = send(
            model.code,
            model.channel,
            latent[view],
            snr,
            generator_for(0, frame.index, view),
        )
        channel_ms += 1000.0 * (time.perf_counter() - start)
        start = time.perf_counter()
        sent = LatentView(
            1,
            frame.index,
            view,
            model.code,
            latent[view, 0].numpy(),
            SourceInfo(frame.name, *size, *size),
            model.cfg.kind,
            Activity(0.0, 0.0, 0),
        ).encode()
        read = LatentView.read(decode_message(sent))
        delivered = ChannelView.after(read, use, settings).encode()
        ChannelView.read(decode_message(delivered))
        serial_ms += 1000.0 * (time.perf_counter() - start)
        messages += [sent, delivered]
    return messages, channel_ms, serial_ms


def transport_ms(messages: list[bytes], repeats: int) -> float:
    """Median time (ms) to move one frame's four messages over loopback TCP, PUSH/PULL."""
    ctx = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    try:
        pull.bind(endpoint)
        push.connect(endpoint)

        def hop() -> None:
            for data in messages:
                push.send(data, copy=False)
                pull.recv(copy=False)

        return median_ms(hop, repeats)
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        ctx.term()


def stage_times(
    model: StereoJSCC, frames: Sequence[Frame], repeats: int
) -> dict[str, float]:
    """Per stereo frame: encode, channel, decode, serialisation and transport (ms),
    medians over the frames (transport: over repeats of the first frame's messages),
    and the bytes of one frame's four messages."""
    stages: dict[str, list[float]] = {
        k: [] for k in ("encode", "channel", "decode", "serialization")
    }
    first: list[bytes] = []
    for frame in frames:
        start = time.perf_counter()
        latent = model.encode(frame.left[None], frame.right[None])["latent"]
        stages["encode"].append(1000.0 * (time.perf_counter() - start))
        messages, channel_ms, serial_ms = link_messages(model, frame, latent)
        stages["channel"].append(channel_ms)
        stages["serialization"].append(serial_ms)
        received = decoder_input(model, latent)
        start = time.perf_counter()
        model.decode(received)
        stages["decode"].append(1000.0 * (time.perf_counter() - start))
        first = first or messages
    out = {f"{k}_ms": statistics.median(v) for k, v in stages.items()}
    out["transport_ms"] = transport_ms(first, repeats)
    out["bytes_per_frame"] = sum(len(m) for m in first)
    return out


def link_fps(
    model_path: str,
    source: str,
    root: str | None,
    repeat: int,
    size: tuple[int, int],
    settings: InferenceConfig,
    out_dir: Path,
) -> dict[str, Any]:
    """The three-process link streaming ``source`` ``repeat`` times as fast as it can (no
    PNGs): frames/s and latency from the receiver's summary."""
    cfg = load_config(
        None,
        [
            f"link.model={model_path}",
            f"link.source={source}",
            f"link.source_root={root or ''}",
            f"link.repeat={repeat}",
            f"link.out_dir={out_dir}",
            "link.save_png=false",
            f"channel.snr_db={BENCH_SNR_DB}",
            f"data.image_height={size[0]}",
            f"data.image_width={size[1]}",
            *inference_overrides(settings),
        ],
    )
    result = run_link(cfg, quiet=True)
    if result.status != 0 or result.summary is None:
        raise LinkError(
            f"the link failed for {model_path} (status {result.status}); "
            f"see {out_dir / 'link.log'}"
        )
    summary = result.summary
    return {
        "fps": summary["fps"],
        "latency_ms": summary["latency_ms"],
        "frames_received": summary["frames_received"],
        "frames_lost": summary["frames_lost"],
    }


def evaluation_fps(
    model: StereoJSCC, frames: Sequence[Frame], batch: int, passes: int
) -> float:
    """Stereo frames/s of in-process evaluation (encode, channel, decode, PSNR and
    MS-SSIM) of ``passes`` passes over ``frames``, ``batch`` frames at a time."""
    stream = [
        Frame(i, f.name, f.left, f.right) for i, f in enumerate(list(frames) * passes)
    ]
    evaluate(model, stream[:batch], [BENCH_SNR_DB], model.channel, batch_size=batch)
    start = time.perf_counter()
    evaluate(
        model,
        stream,
        [BENCH_SNR_DB],
        model.channel,
        measure_energy=False,
        batch_size=batch,
    )
    return len(stream) / (time.perf_counter() - start)


def psnr_check(
    reference: StereoJSCC,
    fast: StereoJSCC,
    frames: Sequence[Frame],
    snrs: Sequence[float],
) -> list[dict[str, float]]:
    """Mean-view PSNR of the reference path and of the fast path of the same model at
    each SNR, with the same channel draws."""
    want = evaluate(reference, frames, snrs, reference.channel, measure_energy=False)
    got = evaluate(fast, frames, snrs, fast.channel, measure_energy=False)
    return [
        {
            "snr_db": a["snr_db"],
            "reference_db": a["psnr_db"]["mean"],
            "fast_db": b["psnr_db"]["mean"],
            "delta_db": b["psnr_db"]["mean"] - a["psnr_db"]["mean"],
        }
        for a, b in zip(want, got)
    ]
