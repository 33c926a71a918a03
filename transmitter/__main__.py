"""``python -m transmitter``: encode stereo frames and send their spike-coded latents.

Connects a PUSH socket to the channel (``link.channel_in``) and another to the receiver's
reference socket (``link.reference``), which carries each original view for measurement
only and never passes through the channel. Sequence numbers count frames from 0 over all
passes (``link.repeat``; 0 repeats forever); an end-of-stream follows the last frame.
"""

from __future__ import annotations

import logging
import sys
import time

import zmq

from shared.config import Config
from shared.model.checkpoint import load_model
from shared.model.energy import EnergyMeter
from shared.process import (
    StopFlag,
    close_all,
    open_sender,
    run_process,
    send,
    wait_for_hangup,
)
from shared.protocol import eos_message, latent_message, reference_message
from transmitter.source import count_frames, frames

NAME = "transmitter"


def stream(cfg: Config, log: logging.Logger, stop: StopFlag) -> int:
    model, model_cfg = load_model(cfg.link.model)
    total = count_frames(cfg)
    ctx = zmq.Context()
    data, data_peers = open_sender(ctx, cfg.link.channel_in, False, cfg.link.hwm)
    ref, ref_peers = open_sender(ctx, cfg.link.reference, False, cfg.link.hwm)
    mode, steps = model_cfg.model.latent, model_cfg.model.time_steps
    seq, t_start = 0, time.monotonic()
    try:
        passes = 0
        while not stop.is_set and (cfg.link.repeat == 0 or passes < cfg.link.repeat):
            for frame, size in frames(cfg, model.stride):
                if stop.is_set:
                    break
                meter = EnergyMeter(model)
                with meter:
                    coded = model.encode(frame.left[None], frame.right[None])
                meter.frames = 1
                encoder = meter.summary().get("encoder", {"energy_pj": 0.0})
                rates = [
                    float(r)
                    for n, r in model.firing_rates().items()
                    if n.startswith("encoder")
                ]
                meta = {
                    "name": frame.name,
                    "height": frame.left.shape[-2],
                    "width": frame.left.shape[-1],
                    "orig_height": size[0],
                    "orig_width": size[1],
                    "enc_rate_sum": sum(rates),
                    "enc_layers": len(rates),
                    "enc_energy_pj": encoder["energy_pj"],
                    "model_kind": model_cfg.model.kind,
                }
                for view, image in ((0, frame.left), (1, frame.right)):
                    cropped = image[..., : size[0], : size[1]]
                    if not send(
                        ref,
                        reference_message(cfg.link.stream, seq, view, cropped, meta),
                        stop,
                    ):
                        break
                    latent = coded["latent"][view, 0].numpy()
                    msg, packed = latent_message(
                        cfg.link.stream, seq, view, latent, mode, steps, meta
                    )
                    if not send(data, msg, stop, packed):
                        break
                log.info("sent frame %d (%s)", seq, frame.name)
                seq += 1
                if cfg.link.fps > 0:
                    delay = t_start + seq / cfg.link.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            passes += 1
        sent = seq
        if stop.is_set:  # the end of stream still goes out, with a short patience
            log.info("stopping (%s) after %d frames", stop.reason, sent)
            patience, interrupt = cfg.link.hb_interval_s * cfg.link.liveness, None
        else:  # a stop request cuts the wait for slow peers short
            patience, interrupt = cfg.link.idle_timeout_s, stop
        for sock in (data, ref):
            if not send(
                sock, eos_message(cfg.link.stream, sent), interrupt, timeout_s=patience
            ):
                log.warning(
                    "end of stream could not be delivered within %.1f s", patience
                )
        log.info(
            "end of stream after %d frames (%d per pass) in %.1f s",
            sent,
            total,
            time.monotonic() - t_start,
        )
        if not wait_for_hangup([data_peers, ref_peers], patience, interrupt):
            log.warning(
                "the channel or the receiver was still connected after %.1f s", patience
            )
        return 0
    finally:
        close_all(ctx, [data, ref], [data_peers, ref_peers])


def main(argv: list[str] | None = None) -> int:
    return run_process(NAME, "transmitter", __doc__, "link.fps=5", argv, stream)


if __name__ == "__main__":
    sys.exit(main())
