"""``python -m receiver``: demodulate, decode both views with stereo fusion, measure.

Connects a PULL socket to the channel (``link.channel_out``) and binds one for the
reference views (``link.reference``). A frame whose other view was lost is decoded alone
(the missing view enters the decoder as an all-zero, i.e. erased, block) and counted.
Writes reconstructions as PNG (``frames/``, and ``grid/`` with ``link.save_grid``),
``frames.jsonl`` and, at the end of the stream, ``summary.json`` into ``link.out_dir``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import zmq

from receiver.assembler import FrameAssembler, PendingFrame
from receiver.report import FrameLog, build_summary
from shared.channel.modulation import signalling_for
from shared.channel.wireless import ChannelUse, WirelessChannel
from shared.config import Config
from shared.data.images import save_png
from shared.evaluation import Frame, frame_metrics
from shared.model.checkpoint import load_model
from shared.model.energy import E_MAC_PJ, EnergyMeter, twin_macs_per_frame
from shared.process import (
    POLL_SLICE_MS,
    DropCounter,
    Liveness,
    StopFlag,
    close_all,
    open_socket,
    receive,
    run_process,
)
from shared.protocol import ProtocolError, parse_channel, parse_eos, parse_reference
from shared.wire import WireError

NAME = "receiver"
#: Meta fields that must agree between the two views of a frame.
FRAME_SIZE = ("height", "width", "orig_height", "orig_width")


@dataclass(frozen=True)
class ReceivedView:
    """One view as the channel delivered it, checked against this receiver's model."""

    use: ChannelUse
    shape: tuple[int, ...]
    meta: dict[str, Any]
    channel: WirelessChannel


class ReceiverProcess:
    def __init__(self, cfg: Config, log, stop: StopFlag) -> None:
        self.cfg, self.log, self.stop = cfg, log, stop
        self.model, self.model_cfg = load_model(cfg.link.model)
        self.out_dir = Path(cfg.link.out_dir)
        self.frames = FrameLog(self.out_dir)
        self.assembler = FrameAssembler()
        self.drops = DropCounter(log)
        self.twin_pj: dict[tuple[int, int], float] = {}
        self.uses: dict[str, float] = {}
        self.frames_sent: int | None = None

    # ------------------------------------------------------------------ decoding

    def decode(self, seq: int, frame: PendingFrame) -> None:
        t0 = time.monotonic()
        views = sorted(frame.views)
        first: ReceivedView = frame.views[views[0]]  # accept() made the views agree
        softs, snrs = {}, {}
        for view in views:
            item: ReceivedView = frame.views[view]
            softs[view] = item.channel.receive(item.use)
            snrs[view] = item.channel.snr_known_db(
                torch.tensor([float(item.meta["snr_db"])]), item.use
            )
        for view in (0, 1):  # a lost view enters as an erased (all-zero) block
            if view not in softs:
                softs[view] = torch.zeros_like(softs[views[0]])
                snrs[view] = snrs[views[0]]
        snr_known = None if snrs[0] is None else torch.cat((snrs[0], snrs[1]))
        meter = EnergyMeter(self.model)
        with meter:
            out = self.model.decode(
                torch.cat((softs[0], softs[1])), first.shape, snr_known
            )
        meter.frames = 1
        meta = first.meta
        height, width = meta["orig_height"], meta["orig_width"]
        recon = {
            v: out[f"x_hat_{s}"][..., :height, :width]
            for v, s in ((0, "left"), (1, "right"))
        }
        for view, image in list(frame.refs.items()):
            if tuple(image.shape[-2:]) != (height, width):
                self.drops.add(
                    "reference",
                    ProtocolError(
                        f"reference of view {view} of frame {seq} is "
                        f"{image.shape[-2]}x{image.shape[-1]}, the frame "
                        f"{height}x{width}"
                    ),
                )
                del frame.refs[view]
        self.write_images(seq, frame, recon, views)
        record = self.record(seq, frame, recon, views, meta, meter, t0)
        self.frames.add(record)
        self.log.info(
            "frame %d %s | %s %.1f dB | PSNR L %s R %s dB | MS-SSIM L %s R %s | %.0f ms",
            seq,
            meta["name"],
            meta["channel"],
            meta["snr_db"],
            _fmt(record["psnr_left"]),
            _fmt(record["psnr_right"]),
            _fmt(record["ms_ssim_left"], 3),
            _fmt(record["ms_ssim_right"], 3),
            record["latency_ms"],
        )

    def record(self, seq, frame, recon, views, meta, meter, t0) -> dict:
        ref = Frame(
            seq,
            meta["name"],
            frame.refs.get(0, recon[0][0]),
            frame.refs.get(1, recon[1][0]),
        )
        values = frame_metrics(ref, {"x_hat_left": recon[0], "x_hat_right": recon[1]})
        for view, side in ((0, "left"), (1, "right")):
            if view not in views or view not in frame.refs:
                values[f"psnr_{side}"] = values[f"ms_ssim_{side}"] = None
        dec = meter.summary().get("decoder", {"energy_pj": 0.0})
        dec_rates = [
            float(r)
            for n, r in self.model.firing_rates().items()
            if n.startswith("decoder")
        ]
        layers = meta["enc_layers"] + len(dec_rates)
        size = (meta["height"], meta["width"])
        if size not in self.twin_pj:
            self.twin_pj[size] = twin_macs_per_frame(self.model, *size) * E_MAC_PJ
            self.uses = self.model.channel_uses(*size)
        done = time.time()
        t_tx = min(frame.views[v].meta["t_tx"] for v in views)
        return {
            "seq": seq,
            "name": meta["name"],
            "views": views,
            "snr_db": meta["snr_db"],
            "channel": meta["channel"],
            "csi": meta["csi"],
            **values,
            "latency_ms": 1000.0 * (done - t_tx),
            "decode_ms": 1000.0 * (time.monotonic() - t0),
            "firing_rate": (meta["enc_rate_sum"] + sum(dec_rates)) / max(layers, 1),
            "energy_pj_snn": meta["enc_energy_pj"] + dec["energy_pj"]
            if meta.get("model_kind") == "snn"
            else None,
            "t_done": done,
        }

    def write_images(
        self, seq: int, frame: PendingFrame, recon: dict, views: list
    ) -> None:
        link = self.cfg.link
        if link.save_png:
            for view in views:
                side = "left" if view == 0 else "right"
                save_png(
                    recon[view][0], self.out_dir / "frames" / f"{seq:06d}_{side}.png"
                )
        if link.save_grid and len(views) == 2 and len(frame.refs) == 2:
            top = torch.cat((frame.refs[0], frame.refs[1]), dim=-1)
            bottom = torch.cat((recon[0][0], recon[1][0]), dim=-1)
            save_png(
                torch.cat((top, bottom), dim=-2),
                self.out_dir / "grid" / f"{seq:06d}.png",
            )

    # ------------------------------------------------------------------ loop

    def on_data(self, msg) -> None:
        try:
            if msg.type == "eos":
                self.frames_sent = parse_eos(msg)
                return
            if msg.type != "data":
                return
            view = self.accept(msg)
        except WireError as exc:
            self.drops.add("channel_out", exc)
            return
        for seq, frame in self.assembler.add_view(msg.seq, msg.view, view):
            self.decode(seq, frame)

    def accept(self, msg) -> ReceivedView:
        """Parse a channel message and check that this receiver's model can decode it.

        Raises ProtocolError for a latent of another mode, T or shape than the model's,
        for channel settings outside the allowed ones, and for a view whose size differs
        from the other view of its frame.
        """
        use, shape, meta, settings = parse_channel(msg)
        cfg = self.model.cfg
        if (meta["latent"], meta["time_steps"]) != (cfg.latent, cfg.time_steps):
            raise ProtocolError(
                f"latent {meta['latent']!r} with T={meta['time_steps']}; this "
                f"receiver's model decodes {cfg.latent!r} with T={cfg.time_steps}"
            )
        size = (meta["height"], meta["width"])
        try:
            self.model.check_size(*size)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        expected = self.model.latent_shape(*size)
        if shape != expected:
            raise ProtocolError(
                f"latent shape {list(shape)} for a {size[0]}x{size[1]} frame; this "
                f"receiver's model expects {list(expected)}"
            )
        for other in self.assembler.views_of(msg.seq).values():
            if [other.meta[k] for k in FRAME_SIZE] != [meta[k] for k in FRAME_SIZE]:
                raise ProtocolError(
                    f"view {msg.view} of frame {msg.seq} differs in size from the "
                    "other view"
                )
        try:
            channel = WirelessChannel.from_config(
                settings, signalling_for(meta["latent"])
            )
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        return ReceivedView(use, shape, meta, channel)

    def on_reference(self, msg) -> None:
        if msg.type != "data":
            return
        try:
            image = parse_reference(msg)
        except WireError as exc:
            self.drops.add("reference", exc)
            return
        for seq, frame in self.assembler.add_reference(msg.seq, msg.view, image):
            self.decode(seq, frame)

    def serve(self) -> int:
        link = self.cfg.link
        ctx = zmq.Context()
        ref = open_socket(ctx, zmq.PULL, link.reference, bind=True, hwm=link.hwm)
        data = open_socket(ctx, zmq.PULL, link.channel_out, bind=False, hwm=link.hwm)
        liveness = Liveness(link.hb_interval_s, link.liveness)
        t_report = time.monotonic()
        status = 0
        self.log.info(
            "receiving from %s, references on %s", link.channel_out, link.reference
        )
        try:
            while not self.stop.is_set and self.frames_sent is None:
                poller = zmq.Poller()
                poller.register(data, zmq.POLLIN)
                poller.register(ref, zmq.POLLIN)
                t_poll = time.monotonic()
                events = dict(poller.poll(POLL_SLICE_MS))
                if data not in events:
                    liveness.waited(time.monotonic() - t_poll)
                else:
                    msg = receive(
                        data, self.drops, "channel_out", link.max_message_bytes
                    )
                    liveness.heard()
                    if msg is not None:
                        self.on_data(msg)
                if ref in events:
                    msg = receive(ref, self.drops, "reference", link.max_message_bytes)
                    if msg is not None:
                        self.on_reference(msg)
                if liveness.newly_silent():
                    self.log.warning(
                        "no message (not even a heartbeat) from the channel for "
                        "%.1f s; libzmq keeps reconnecting with back-off",
                        liveness.silence_s,
                    )
                if liveness.silence_s > link.idle_timeout_s:
                    self.log.error(
                        "nothing from the channel for %.0f s; giving up",
                        link.idle_timeout_s,
                    )
                    status = 1
                    break
                if time.monotonic() - t_report > link.summary_every_s:
                    self.report_progress()
                    t_report = time.monotonic()
            self.drain_references(ref)
            for seq, frame in self.assembler.flush():
                self.decode(seq, frame)
        finally:
            close_all(ctx, [data, ref])
        summary = self.summary()
        (self.out_dir / "summary.json").write_text(_dumps(summary))
        self.log.info(
            "summary: %d of %s frames, PSNR %s dB, MS-SSIM %s, %s fps -> %s",
            summary["frames_received"],
            summary["frames_sent"],
            _fmt(summary["psnr_db"]["mean"]),
            _fmt(summary["ms_ssim"]["mean"], 3),
            _fmt(summary["fps"], 1),
            self.out_dir / "summary.json",
        )
        return status

    def drain_references(self, ref: zmq.Socket) -> None:
        """After the end of stream, wait a little for references still in flight."""
        link = self.cfg.link
        deadline = time.monotonic() + link.hb_interval_s * link.liveness
        while self.assembler.waiting_for_references() and time.monotonic() < deadline:
            if ref.poll(POLL_SLICE_MS, zmq.POLLIN):
                msg = receive(ref, self.drops, "reference", link.max_message_bytes)
                if msg is not None:
                    self.on_reference(msg)

    def report_progress(self) -> None:
        records = self.frames.records
        complete = [r["psnr_left"] for r in records if r["psnr_left"] is not None]
        self.log.info(
            "progress: %d frames decoded, mean left PSNR %s dB, %d dropped",
            len(records),
            _fmt(sum(complete) / len(complete) if complete else None),
            self.drops.total,
        )

    def summary(self) -> dict:
        return build_summary(
            self.frames.records,
            self.frames_sent,
            {
                "rho": self.uses.get("rho"),
                "channel_uses_per_view": self.uses.get("n"),
                "source_values_per_view": self.uses.get("k"),
                "energy_pj_cnn_twin": next(iter(self.twin_pj.values()), None),
                "dropped_messages": dict(self.drops.counts),
                "model": self.cfg.link.model,
                "model_config": self.model_cfg.to_dict()["model"],
                "config": self.cfg.to_dict(),
            },
        )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _dumps(obj: dict) -> str:
    return json.dumps(obj, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_process(
        NAME,
        "receiver",
        __doc__,
        "link.out_dir=runs/rx",
        argv,
        lambda cfg, log, stop: ReceiverProcess(cfg, log, stop).serve(),
    )


if __name__ == "__main__":
    sys.exit(main())
