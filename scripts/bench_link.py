"""Benchmark the link: frames/s and per-stage latency, against the same model in one process.

Usage: python scripts/bench_link.py [--model models/snn_v4.pt] [--frames 14]
                                    [--out runs/bench]

Stages, per stereo frame (both views), median over frames:
- encode: ``model.encode`` of both views;
- channel: modulation, power normalisation, AWGN at 5 dB and equalisation of both views;
- decode: ``model.decode`` of both views;
- serialization: msgpack encoding and validated decoding of the four link messages of a
frame
  (two latents, two channel outputs);
- transport: one ZeroMQ PUSH/PULL hop over loopback TCP of those four messages.
Then the real three-process link streams the same frames (no PNGs); its frames/s and
latency come from the receiver's summary. Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import zmq

from shared.assets import BUNDLED_SNN, SAMPLE_PAIRS
from shared.channel.rng import generator_for
from shared.config import ChannelConfig, load_config
from shared.data.frames import load_frames
from shared.link.hop import DecoderInput, receive, send
from shared.link.launcher import free_tcp_port, run_link
from shared.link.messages import ChannelView, LatentView, SourceInfo
from shared.measure.activity import Activity
from shared.model.checkpoint import load_model
from shared.wire import decode_message


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, 1000.0 * (time.perf_counter() - start)


def in_process(model, frames, snr_db: float) -> tuple[dict, list[bytes]]:
    stages = {"encode": [], "channel": [], "decode": [], "serialization": []}
    messages: list[bytes] = []
    channel, code = model.channel, model.code
    settings = dataclasses.replace(ChannelConfig(), snr_db=snr_db)
    snr = torch.tensor([snr_db])
    for frame in frames:
        coded, t_enc = timed(model.encode, frame.left[None], frame.right[None])
        received, t_ch, t_ser = [], 0.0, 0.0
        for view in (0, 1):
            start = time.perf_counter()
            latent = coded["latent"][view]
            use = send(code, channel, latent, snr, generator_for(0, frame.index, view))
            received.append(receive(code, channel, use, snr, coded["shape"]))
            t_ch += 1000.0 * (time.perf_counter() - start)
            start = time.perf_counter()
            source = SourceInfo(
                frame.name, *frame.left.shape[-2:], *frame.left.shape[-2:]
            )
            wire_latent = LatentView(
                1,
                frame.index,
                view,
                code,
                latent[0].numpy(),
                source,
                model.cfg.kind,
                Activity(0.0, 0.0, 0),
            ).encode()
            sent = LatentView.read(decode_message(wire_latent))
            wire_channel = ChannelView.after(sent, use, settings).encode()
            ChannelView.read(decode_message(wire_channel))
            t_ser += 1000.0 * (time.perf_counter() - start)
            messages += [wire_latent, wire_channel]
        _, t_dec = timed(model.decode, DecoderInput.cat(received))
        for name, value in (
            ("encode", t_enc),
            ("channel", t_ch),
            ("decode", t_dec),
            ("serialization", t_ser),
        ):
            stages[name].append(value)
    medians = {k: statistics.median(v) for k, v in stages.items()}
    total = sum(sum(v) for v in stages.values()) / 1000.0
    medians["fps"] = len(frames) / total
    return medians, messages


def transport(messages: list[bytes], repeats: int = 20) -> dict:
    """Median time to move one frame's four messages over loopback TCP (PUSH/PULL)."""
    ctx = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(endpoint)
    push.connect(endpoint)
    per_frame = [messages[i : i + 4] for i in range(0, len(messages), 4)]
    times = []
    for _ in range(repeats):
        for frame in per_frame:
            start = time.perf_counter()
            for data in frame:
                push.send(data, copy=False)
                pull.recv(copy=False)
            times.append(1000.0 * (time.perf_counter() - start))
    push.close(linger=0)
    pull.close(linger=0)
    ctx.term()
    sizes = [len(m) for m in messages[:4]]
    return {
        "transport": statistics.median(times),
        "bytes_per_frame": sum(sizes),
        "message_bytes": sizes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(BUNDLED_SNN))
    parser.add_argument("--data", default=str(SAMPLE_PAIRS))
    parser.add_argument("--repeat", type=int, default=2, help="passes over the data")
    parser.add_argument("--snr", type=float, default=5.0)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    model, cfg = load_model(args.model)
    frames = load_frames(args.data, None, cfg.data.image_height, cfg.data.image_width)
    frames = frames * args.repeat
    frames = [type(f)(i, f.name, f.left, f.right) for i, f in enumerate(frames)]
    model(
        frames[0].left[None], frames[0].right[None], torch.tensor([args.snr])
    )  # warm-up
    stages, messages = in_process(model, frames, args.snr)
    stages.update(transport(messages))
    out = Path(args.out)
    link_cfg = load_config(
        None,
        [
            f"link.model={args.model}",
            f"link.source={args.data}",
            f"link.repeat={args.repeat}",
            f"link.out_dir={out / 'link'}",
            "link.save_png=false",
            f"channel.snr_db={args.snr}",
            f"data.image_height={cfg.data.image_height}",
            f"data.image_width={cfg.data.image_width}",
        ],
    )
    result = run_link(link_cfg, quiet=True)
    if result.status != 0:
        print(f"the link failed (status {result.status})", file=sys.stderr)
        return 1
    summary = result.summary
    report = {
        "model": args.model,
        "kind": cfg.model.kind,
        "frames": len(frames),
        "image_size": [cfg.data.image_height, cfg.data.image_width],
        "threads": torch.get_num_threads(),
        "in_process_ms_per_frame": stages,
        "link": {
            "fps": summary["fps"],
            "latency_ms": summary["latency_ms"],
            "frames_received": summary["frames_received"],
            "frames_lost": summary["frames_lost"],
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_link.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
