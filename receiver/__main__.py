"""``python -m receiver``: demodulate, decode both views with stereo fusion, measure.

Connects a PULL socket to the channel (``link.channel_out``) and binds one for the
reference views (``link.reference``). A frame whose other view was lost is decoded alone
(the missing view enters the decoder as its latent code's fill for a lost view) and
counted. Writes reconstructions as PNG (``frames/``, and ``grid/`` with
``link.save_grid``), ``frames.jsonl`` and, at the end of the stream, ``summary.json`` into
``link.out_dir``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import zmq
from torch import Tensor

from receiver.assembler import FrameAssembler, PendingFrame
from receiver.report import FrameLog, build_summary
from shared.channel.wireless import WirelessChannel
from shared.config import Config
from shared.data.images import save_png
from shared.errors import ConfigError, DataError, ProtocolError, WireError
from shared.formatting import number
from shared.link.hop import DecoderInput, lost_view, receive
from shared.link.messages import (
    VIEWS,
    ChannelView,
    EndOfStream,
    ReferenceView,
    check_stream,
    read_from_channel,
    read_reference,
)
from shared.link.process import process_kernel_threads, run_process
from shared.link.security import (
    client_of,
    link_keys,
    server_of,
    start_authenticator,
)
from shared.link.sockets import (
    POLL_SLICE_MS,
    DropCounter,
    Liveness,
    close_all,
    count_stream,
    open_socket,
)
from shared.link.sockets import (
    receive as receive_message,
)
from shared.measure.meter import decode_measured, twin_energy_pj
from shared.measure.quality import view_quality
from shared.model.inference import describe, load_for_inference
from shared.model.kernel_threads import set_kernel_threads
from shared.signals import StopFlag

NAME = "receiver"
SIDES = ("left", "right")


@dataclass(frozen=True)
class ArrivedView:
    """One view as the channel delivered it, checked against this receiver's model, with
    the channel it went through."""

    delivered: ChannelView
    channel: WirelessChannel

    def decoder_input(self) -> DecoderInput:
        d = self.delivered
        snr = torch.tensor([float(d.settings.snr_db)])
        return receive(d.code, self.channel, d.use, snr, d.latent_shape)


class ReceiverProcess:
    def __init__(self, cfg: Config, log: logging.Logger, stop: StopFlag) -> None:
        self.cfg, self.log, self.stop = cfg, log, stop
        self.model, self.model_cfg = load_for_inference(cfg.link.model, cfg.infer)
        set_kernel_threads(process_kernel_threads(cfg.link.kernel_threads))
        log.info("model %s on %s", cfg.link.model, describe(self.model))
        self.out_dir = Path(cfg.link.out_dir)
        self.frames = FrameLog(self.out_dir, resume=cfg.link.resume_stream)
        self.assembler = FrameAssembler()
        self.drops = DropCounter(log)
        self.first_size: tuple[int, int] | None = None
        self.streams: Counter[str] = Counter()
        self.frames_sent: int | None = None

    # ------------------------------------------------------------------ decoding

    def decode(self, seq: int, frame: PendingFrame) -> None:
        t0 = time.monotonic()
        views = sorted(frame.views)
        first: ChannelView = frame.views[views[0]].delivered  # accept() made them agree
        inputs = {v: frame.views[v].decoder_input() for v in views}
        for view in VIEWS:
            if view not in inputs:
                inputs[view] = lost_view(self.model.code, inputs[views[0]])
        out, decoder = decode_measured(
            self.model, DecoderInput.cat([inputs[v] for v in VIEWS])
        )
        height, width = first.source.orig_size
        recon = {
            v: out[f"x_hat_{side}"][..., :height, :width]
            for v, side in enumerate(SIDES)
        }
        self.keep_fitting_references(seq, frame, (height, width))
        self.write_images(seq, frame, recon, views)
        record = self.record(seq, frame, recon, views, first, decoder, t0)
        self.frames.add(record)
        self.log.info(
            "frame %d %s | %s %.1f dB | PSNR L %s R %s dB | MS-SSIM L %s R %s | %.0f ms",
            seq,
            first.source.name,
            first.settings.kind,
            first.settings.snr_db,
            number(record["psnr_left"]),
            number(record["psnr_right"]),
            number(record["ms_ssim_left"], 3),
            number(record["ms_ssim_right"], 3),
            record["latency_ms"],
        )

    def keep_fitting_references(
        self, seq: int, frame: PendingFrame, size: tuple[int, int]
    ) -> None:
        """Drop (and count) references whose size is not the frame's original size."""
        for view, image in list(frame.refs.items()):
            if tuple(image.shape[-2:]) != size:
                self.drops.add(
                    "reference",
                    ProtocolError(
                        f"reference of view {view} of frame {seq} is "
                        f"{image.shape[-2]}x{image.shape[-1]}, the frame "
                        f"{size[0]}x{size[1]}"
                    ),
                )
                del frame.refs[view]

    def record(self, seq, frame, recon, views, first: ChannelView, decoder, t0) -> dict:
        values = {}
        for view, side in enumerate(SIDES):
            reference = frame.refs.get(view) if view in views else None
            values.update(view_quality(reference, recon[view], side))
        size = first.source.size
        if self.first_size is None:
            self.first_size = size
        activity = first.activity + decoder
        data_symbols = int(self.model.channel_uses(*size)["n"])
        done = time.time()
        t_tx = min(frame.views[v].delivered.t_tx for v in views)
        return {
            "seq": seq,
            "name": first.source.name,
            "views": views,
            "snr_db": first.settings.snr_db,
            "channel": first.settings.kind,
            "csi": first.settings.csi,
            "channel_uses": frame.views[views[0]].channel.channel_uses(data_symbols),
            **values,
            "latency_ms": 1000.0 * (done - t_tx),
            "decode_ms": 1000.0 * (time.monotonic() - t0),
            "firing_rate": activity.firing_rate,
            "energy_pj_snn": activity.energy_pj if first.model_kind == "snn" else None,
            "t_done": done,
        }

    def write_images(
        self, seq: int, frame: PendingFrame, recon: dict[int, Tensor], views: list[int]
    ) -> None:
        link = self.cfg.link
        if link.save_png:
            for view in views:
                save_png(
                    recon[view][0],
                    self.out_dir / "frames" / f"{seq:06d}_{SIDES[view]}.png",
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
        count_stream(self.streams, msg.stream)
        try:
            check_stream(msg, self.cfg.link.stream)
            item = read_from_channel(msg)
            if isinstance(item, EndOfStream):
                self.frames_sent = item.frames_sent
                return
            if not isinstance(item, ChannelView):
                return
            arrived = self.accept(item)
        except WireError as exc:
            self.drops.add("channel_out", exc, msg.seq)
            return
        for seq, frame in self.assembler.add_view(item.seq, item.view, arrived):
            self.decode(seq, frame)

    def accept(self, view: ChannelView) -> ArrivedView:
        """Check that this receiver's model can decode a delivered view.

        Raises ProtocolError for a frame decoded already (a repeated message), a latent
        of another code, T or shape than the model's, channel settings that cannot carry
        the code, and a view whose size differs from the other view of its frame.
        """
        if view.seq in self.frames.seqs:
            raise ProtocolError(f"frame {view.seq} was decoded already")
        if view.code != self.model.code:
            raise ProtocolError(
                f"latent {view.code.name!r} with T={view.code.time_steps}; this "
                f"receiver's model decodes {self.model.code.name!r} with "
                f"T={self.model.code.time_steps}"
            )
        size = view.source.size
        try:
            self.model.check_size(*size)
        except DataError as exc:
            raise ProtocolError(str(exc)) from None
        expected = self.model.latent_shape(*size)
        if view.latent_shape != expected:
            raise ProtocolError(
                f"latent shape {list(view.latent_shape)} for a {size[0]}x{size[1]} "
                f"frame; this receiver's model expects {list(expected)}"
            )
        for other in self.assembler.views_of(view.seq).values():
            if other.delivered.source != view.source:
                raise ProtocolError(
                    f"view {view.view} of frame {view.seq} differs in size from the "
                    "other view"
                )
        try:
            channel = WirelessChannel.for_code(view.settings, view.code)
        except ConfigError as exc:
            raise ProtocolError(str(exc)) from None
        return ArrivedView(view, channel)

    def on_reference(self, msg) -> None:
        count_stream(self.streams, msg.stream)
        try:
            check_stream(msg, self.cfg.link.stream)
            item = read_reference(msg)
        except WireError as exc:
            self.drops.add("reference", exc)
            return
        if isinstance(item, ReferenceView):
            for seq, frame in self.assembler.add_reference(
                item.seq, item.view, item.image
            ):
                self.decode(seq, frame)

    def serve(self) -> int:
        link = self.cfg.link
        keys = link_keys(link, "receiver")
        ctx = zmq.Context()
        auth = start_authenticator(ctx, keys)
        ref = open_socket(
            ctx,
            zmq.PULL,
            link.reference,
            bind=True,
            hwm=link.hwm,
            secure=server_of(keys),
        )
        data = open_socket(
            ctx,
            zmq.PULL,
            link.channel_out,
            bind=False,
            hwm=link.hwm,
            secure=client_of(keys, "channel"),
        )
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
                    msg = receive_message(
                        data, self.drops, "channel_out", link.max_message_bytes
                    )
                    liveness.heard()
                    if msg is not None:
                        self.on_data(msg)
                if ref in events:
                    msg = receive_message(
                        ref, self.drops, "reference", link.max_message_bytes
                    )
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
            close_all(ctx, [data, ref], authenticator=auth)
        summary = self.summary()
        (self.out_dir / "summary.json").write_text(_dumps(summary))
        self.log.info(
            "summary: %d of %s frames, PSNR %s dB, MS-SSIM %s, %s fps -> %s",
            summary["frames_received"],
            summary["frames_sent"],
            number(summary["psnr_db"]["mean"]),
            number(summary["ms_ssim"]["mean"], 3),
            number(summary["fps"], 1),
            self.out_dir / "summary.json",
        )
        return status

    def drain_references(self, ref: zmq.Socket) -> None:
        """After the end of stream, wait a little for references still in flight."""
        link = self.cfg.link
        deadline = time.monotonic() + link.hb_interval_s * link.liveness
        while self.assembler.waiting_for_references() and time.monotonic() < deadline:
            if ref.poll(POLL_SLICE_MS, zmq.POLLIN):
                msg = receive_message(
                    ref, self.drops, "reference", link.max_message_bytes
                )
                if msg is not None:
                    self.on_reference(msg)

    def report_progress(self) -> None:
        self.log.info(
            "progress: %d frames decoded, mean left PSNR %s dB, %d dropped",
            self.frames.count,
            number(self.frames.mean_left_psnr),
            self.drops.total,
        )

    def summary(self) -> dict:
        """The run's summary; its channel uses per view and rho are those of the first
        frame decoded, pilots included (``frames.jsonl`` has every frame's)."""
        records = self.frames.records()
        uses = (
            {} if self.first_size is None else self.model.channel_uses(*self.first_size)
        )
        if uses and records:
            n = records[0].get("channel_uses", uses["n"])
            uses = {**uses, "n": n, "rho": n / uses["k"]}
        twin = (
            None
            if self.first_size is None
            else twin_energy_pj(self.model.cfg, *self.first_size)
        )
        return build_summary(
            records,
            self.frames_sent,
            self.drops.reasons,
            {
                "rho": uses.get("rho"),
                "channel_uses_per_view": uses.get("n"),
                "source_values_per_view": uses.get("k"),
                "energy_pj_cnn_twin": twin,
                "dropped_messages": dict(self.drops.counts),
                "messages_by_stream": dict(self.streams),
                "model": self.cfg.link.model,
                "model_config": self.model_cfg.to_dict()["model"],
                "config": self.cfg.to_dict(),
            },
        )


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
