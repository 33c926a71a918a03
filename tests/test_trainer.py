"""The trainer: it learns, saves and resumes exactly, runs DDP, and stops on bad states."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import REPO, SAMPLES, TINY_ON_SAMPLES, wait_until
from torch.nn.parallel import DistributedDataParallel

from shared.config import load_config, override_arguments
from shared.data.datasets import EvalPairs
from shared.data.frames import Frame
from shared.data.pairs import find_pairs
from shared.errors import CheckpointError, TrainingError
from shared.evaluation import evaluate
from shared.link.launcher import free_tcp_port
from shared.model.checkpoint import load_checkpoint, load_model
from shared.model.inference import fast_bfloat16
from shared.model.registry import build_model
from shared.signals import StopFlag
from trainer import train as train_module
from trainer.__main__ import main
from trainer.distill import FeatureDistiller
from trainer.distributed import Runtime, any_rank, setup, teardown
from trainer.ema import WeightAverage
from trainer.hybrid import init_from_twin
from trainer.logs import read_records
from trainer.train import (
    _check_silent,
    mixed_precision,
)

#: Every test here starts processes or trains (left out of ``make test-fast``).
pytestmark = pytest.mark.heavy


def run(tmp: Path, *extra: str) -> int:
    return main([*TINY_ON_SAMPLES, "--out", str(tmp), *extra])


def two_pair_split(folder: Path) -> Path:
    """A validation split file of two bundled sample pairs, written in ``folder``."""
    split = folder / "val.txt"
    split.write_text("stereo/cones_2003_Q\nstereo/kitti2012_000000_10\n")
    return split


def sample_frames(height: int, width: int) -> list[Frame]:
    pairs = EvalPairs(find_pairs(SAMPLES / "stereo"), height, width)
    return [Frame(i, p["name"], p["left"], p["right"]) for i, p in enumerate(pairs)]


def test_short_training_beats_a_constant_image_by_5_db(tmp_path: Path) -> None:
    """The spiking model learns: 150 CPU steps on the real sample pairs."""
    assert (
        run(
            tmp_path,
            "--set",
            "train.steps=150",
            "--set",
            "train.warmup_steps=10",
            "--set",
            "train.snr_min_db=20",
            "--set",
            "train.snr_max_db=20",
        )
        == 0
    )
    model, cfg = load_model(tmp_path / "model.pt")
    frames = sample_frames(cfg.data.image_height, cfg.data.image_width)
    record = evaluate(model, frames, [20.0], model.channel, measure_energy=False)[0]
    views = torch.stack([torch.stack((f.left, f.right)) for f in frames])
    constant = views.mean(dim=(0, 1, 3, 4), keepdim=True)
    mse = (views - constant).square().mean(dim=(2, 3, 4))
    constant_psnr = (-10 * torch.log10(mse)).mean().item()
    assert record["psnr_db"]["mean"] >= constant_psnr + 5.0, (
        record["psnr_db"],
        constant_psnr,
    )
    log = [
        json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()
    ]
    assert log[-1]["kind"] == "train" and 0.02 < log[-1]["rate_mean"] < 0.5
    assert (tmp_path / "train.csv").read_text().startswith("step,loss,mse,psnr,lr")


def test_checkpoint_round_trip(tmp_path: Path, sample_pair) -> None:
    assert run(tmp_path, "--set", "train.steps=2") == 0
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert set(ckpt) >= {
        "model",
        "optimizer",
        "scheduler",
        "config",
        "step",
        "best_metric",
        "metrics",
        "git_commit",
    }
    assert ckpt["step"] == 2
    model, cfg = load_model(tmp_path / "last.pt")
    fresh = build_model(cfg.model)
    fresh.load_state_dict(ckpt["model"])
    left, right = (x[..., :64, :128] for x in sample_pair)
    snr = torch.tensor([5.0])
    with torch.no_grad():
        a = model(left, right, snr, torch.Generator().manual_seed(0))["x_hat_left"]
        b = fresh.eval()(left, right, snr, torch.Generator().manual_seed(0))[
            "x_hat_left"
        ]
    assert torch.equal(a, b)
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "model.pt").exists()
    assert "optimizer" not in load_checkpoint(tmp_path / "model.pt")


@pytest.mark.parametrize("ema_decay", ["0", "0.5"])
def test_resume_continues_exactly(tmp_path: Path, ema_decay: str) -> None:
    steps = ["--set", "train.steps=6", "--set", "train.ckpt_every=100"]
    steps += ["--set", f"train.ema_decay={ema_decay}"]
    assert run(tmp_path / "straight", *steps) == 0
    assert run(tmp_path / "paused", *steps, "--set", "train.max_minutes=1.0e-9") == 0
    assert load_checkpoint(tmp_path / "paused" / "last.pt")["step"] == 1
    assert (
        main(
            [
                "--resume",
                str(tmp_path / "paused" / "last.pt"),
                "--set",
                "train.max_minutes=0",
            ]
        )
        == 0
    )
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "paused" / "last.pt")
    assert b["step"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert ("ema" in b) == (ema_decay != "0")
    if "ema" in b:
        assert a["ema"]["updates"] == b["ema"]["updates"] == 6
        for key, value in a["ema"]["model"].items():
            assert torch.equal(value, b["ema"]["model"][key]), key


def test_resume_refuses_a_different_model(tmp_path: Path, capsys) -> None:
    assert run(tmp_path, "--set", "train.steps=1") == 0
    code = main(["--resume", str(tmp_path / "last.pt"), "--set", "model.tau=3.0"])
    assert code == 2 and "model.tau" in capsys.readouterr().err


def test_a_new_run_does_not_replace_an_earlier_one(tmp_path: Path, capsys) -> None:
    steps = ["--set", "train.steps=2", "--set", "train.log_every=1"]
    handler = signal.getsignal(signal.SIGINT)
    assert run(tmp_path, *steps) == 0
    assert signal.getsignal(signal.SIGINT) is handler  # the trainer put it back
    before = (tmp_path / "last.pt").read_bytes()
    assert run(tmp_path, *steps, "--set", "train.seed=1") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "last.pt").read_bytes() == before
    assert run(tmp_path, *steps, "--set", "train.seed=1", "--overwrite") == 0
    assert load_checkpoint(tmp_path / "last.pt")["config"]["train"]["seed"] == 1
    logged = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [1, 2]
    assert len((tmp_path / "train.csv").read_text().splitlines()) == 1 + 2


def test_ctrl_c_saves_the_step_reached_and_the_run_resumes(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "trainer", *TINY_ON_SAMPLES, "--out", str(tmp_path)]
    sets = ["train.steps=100000", "train.log_every=1", "train.ckpt_every=100000"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        cmd + [a for s in sets for a in ("--set", s)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: read_records(tmp_path, "train"), 120, "a training record")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, stderr[-2000:]
    assert "interrupted (SIGINT)" in stderr and "--resume" in stderr
    step = load_checkpoint(tmp_path / "last.pt")["step"]
    assert 1 <= step < 100000
    assert read_records(tmp_path, "train")[-1]["step"] <= step
    code = main(
        ["--resume", str(tmp_path / "last.pt"), "--set", f"train.steps={step + 2}"]
    )
    assert code == 0 and load_checkpoint(tmp_path / "last.pt")["step"] == step + 2


def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "trainer",
        *TINY_ON_SAMPLES,
        "--set",
        "train.steps=4",
        "--set",
        "train.threads=1",
        "--set",
        "train.max_minutes=60",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2" in proc.stderr
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4


def _on_two_ranks(
    rank_main: Callable[[int, int, str], None], out_dir: Path, timeout_s: float = 120
) -> list:
    """Run ``rank_main(rank, port, out_dir)`` in two spawned processes on a free local
    port; returns what each rank wrote to ``out_dir/rank<r>.json``, by rank. Ranks still
    running after ``timeout_s`` are killed and the test fails: they hung."""
    port = free_tcp_port()
    ranks = torch.multiprocessing.start_processes(
        rank_main, args=(port, str(out_dir)), nprocs=2, join=False
    )
    deadline = time.monotonic() + timeout_s
    while not ranks.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() > deadline:
            for proc in ranks.processes:
                proc.kill()
            pytest.fail(f"a rank was still running after {timeout_s:.0f} s")
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def _vote(rank: int, port: int, out_dir: str) -> None:
    """One rank of a two-process gloo group: rank 1 alone wants to stop, then none."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    runtime = Runtime(rank, 2, torch.device("cpu"), True)
    votes = [any_rank(runtime, rank == 1), any_rank(runtime, False)]
    dist.destroy_process_group()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(votes))


def test_a_stop_wanted_by_one_rank_stops_every_rank(tmp_path: Path) -> None:
    """The time budget must end the loop on all ranks at the same step."""
    assert _on_two_ranks(_vote, tmp_path) == [[True, False], [True, False]]


def _train_with_a_failing_rank(rank: int, port: int, out_dir: str) -> None:
    """One rank of a two-process gloo run of the real trainer, where rank 1's loss is
    not finite at its third step; records how the rank's run ended."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(
        "gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60)
    )
    runtime = Runtime(rank, 2, torch.device("cpu"), True)
    if rank == 1:
        real, calls = train_module.stereo_loss, []

        def poisoned(output, batch, cfg):
            calls.append(1)
            terms = real(output, batch, cfg)
            if len(calls) == 3:
                terms["loss"] = terms["loss"] * float("nan")
            return terms

        train_module.stereo_loss = poisoned
    settings = (
        f"data.root={SAMPLES}",
        "data.stereo=[stereo]",
        "train.steps=8",
        "train.threads=1",
        "train.log_every=1",
        f"train.out_dir={out_dir}/run",
    )
    try:
        with StopFlag() as stop:
            train_module.train(load_config("tiny", settings), runtime, stop)
        outcome = "finished"
    except TrainingError as exc:
        outcome = str(exc)
    finally:
        teardown(runtime)
    record = {"outcome": outcome, "gloo_threads": _gloo_threads_left()}
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(record))


def test_a_failing_rank_stops_every_rank_without_a_hang(tmp_path: Path) -> None:
    """Rank 1 fails before its backward pass, where rank 0 would wait for its gradients:
    both ranks end with an error, neither waits for the other, and teardown ends the
    gloo threads of both (the failed rank's model, held by its exception's traceback,
    kept them alive into interpreter shutdown, where they could abort it)."""
    records = _on_two_ranks(_train_with_a_failing_rank, tmp_path, timeout_s=120)
    assert "another rank stopped with an error" in records[0]["outcome"]
    assert (
        "non-finite loss" in records[1]["outcome"] and "step 2" in records[1]["outcome"]
    )
    assert [record["gloo_threads"] for record in records] == [0, 0]


THREADS = Path("/proc/self/task")


def _gloo_threads() -> int:
    """Threads of this process named by gloo (a joined thread can linger in /proc briefly)."""
    count = 0
    for task in THREADS.iterdir():
        try:
            count += "gloo" in (task / "comm").read_text()
        except OSError:
            continue
    return count


def _gloo_threads_left(wait_s: float = 10) -> int:
    """Gloo threads of this process still there ``wait_s`` seconds after teardown (0 as
    soon as none is)."""
    deadline = time.monotonic() + wait_s
    while _gloo_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _gloo_threads()


def _gloo_threads_after_teardown(rank: int, port: int, out_dir: str) -> None:
    """One rank of a two-process DDP step; records the gloo threads left after teardown."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2"
    )
    runtime = setup("cpu")
    net = DistributedDataParallel(torch.nn.Linear(3, 3))
    net(torch.randn(2, 3)).sum().backward()
    any_rank(runtime, False)
    del net
    teardown(runtime)
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(_gloo_threads_left()))


@pytest.mark.skipif(not THREADS.is_dir(), reason="needs Linux /proc")
def test_teardown_ends_the_gloo_threads(tmp_path: Path) -> None:
    """Threads that outlive teardown run into interpreter shutdown and can abort a rank."""
    assert _on_two_ranks(_gloo_threads_after_teardown, tmp_path) == [0, 0]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    real = train_module.stereo_loss
    calls = {"n": 0}

    def poisoned(output, batch, cfg):
        calls["n"] += 1
        terms = real(output, batch, cfg)
        if calls["n"] == 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(train_module, "stereo_loss", poisoned)
    assert run(tmp_path, "--set", "train.steps=5", "--set", "train.ckpt_every=1") == 1
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_silent_layers_stop_training() -> None:
    counts: dict[str, int] = {}
    rates = {"enc.a": torch.tensor(0.1), "enc.b": torch.tensor(0.0)}
    _check_silent(rates, counts)
    _check_silent(rates, counts)
    with pytest.raises(TrainingError, match="enc.b"):
        _check_silent(rates, counts)


def test_weights_only_loading_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": Path("x")}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_mismatched_config_names_the_keys(tmp_path: Path) -> None:
    assert run(tmp_path, "--set", "train.steps=1") == 0
    other = load_config("tiny", ["model.widths=[8, 16, 32]"])
    with pytest.raises(CheckpointError, match=r"model config: widths"):
        load_model(tmp_path / "model.pt", expected=other)
    with pytest.raises(CheckpointError, match="widths"):
        init_from_twin(build_model(other.model), str(tmp_path / "model.pt"), other, 1.0)
    wrong = build_model(other.model)
    with pytest.raises(CheckpointError, match="shape mismatch: .*stages.2"):
        from shared.model.checkpoint import load_state_strict

        load_state_strict(wrong, load_checkpoint(tmp_path / "model.pt")["model"], "x")


def test_hybrid_initialisation_copies_the_twin(tmp_path: Path) -> None:
    """A twin trained with either gradient initialises the SNN (the key is a neuron
    setting, like the surrogate)."""
    exact_twin = ("--set", "model.kind=cnn", "--set", "model.twin_gradient=exact")
    assert run(tmp_path, "--set", "train.steps=1", *exact_twin) == 0
    cfg = load_config("tiny")
    assert cfg.model.twin_gradient == "surrogate"
    snn = build_model(cfg.model)
    init_from_twin(snn, str(tmp_path / "model.pt"), cfg, bn_scale=2.0)
    twin = load_checkpoint(tmp_path / "model.pt")["model"]
    stem = "encoder_left.stem.0.weight"
    assert torch.equal(snn.state_dict()[stem], twin[stem])
    bn = "encoder_left.stem.1.weight"
    assert torch.allclose(snn.state_dict()[bn], 2.0 * twin[bn])
    longer = load_config("tiny", ["model.time_steps=8"])
    init_from_twin(build_model(longer.model), str(tmp_path / "model.pt"), longer, 1.0)


def test_a_spike_bpsk_snn_starts_from_the_mean_of_its_twins_bit_planes(
    tmp_path: Path,
) -> None:
    """Spike-BPSK: the twin's latent head has one filter per bit plane (T x C), the
    SNN's one per neuron (C); the SNN's starts from the mean of the planes' filters and
    every other weight is the twin's."""
    bpsk = ("model.latent=spike_bpsk", "model.time_steps=2")
    assert (
        run(tmp_path, *override_arguments(("train.steps=1", "model.kind=cnn", *bpsk)))
        == 0
    )
    cfg = load_config("tiny", list(bpsk))
    snn = build_model(cfg.model)
    init_from_twin(snn, str(tmp_path / "model.pt"), cfg, 1.0)
    twin = load_checkpoint(tmp_path / "model.pt")["model"]
    head = "encoder_left.head.conv.0.weight"
    channels = snn.latent_channels
    assert twin[head].shape[0] == 2 * channels == 2 * snn.state_dict()[head].shape[0]
    planes = twin[head].reshape(2, channels, *twin[head].shape[1:])
    assert torch.allclose(snn.state_dict()[head], planes.mean(0))
    assert not torch.allclose(planes[0], planes[1])
    stem = "encoder_left.stem.0.weight"
    assert torch.equal(snn.state_dict()[stem], twin[stem])


def test_distillation_pulls_the_snn_towards_its_twin(tmp_path: Path) -> None:
    """``train.distill_from``: the twin teaching itself gives 0, the SNN a positive term
    whose gradient reaches its first convolution; a trainer run logs the term, and a
    teacher of another topology is refused by name."""
    assert (
        run(tmp_path / "twin", "--set", "train.steps=1", "--set", "model.kind=cnn") == 0
    )
    path = str(tmp_path / "twin" / "model.pt")
    frame = sample_frames(32, 64)[0]
    left, right = frame.left[None], frame.right[None]
    snr = torch.tensor([5.0])
    for kind in ("cnn", "snn"):
        cfg = load_config("tiny", [f"model.kind={kind}"])
        student = build_model(cfg.model)
        init_from_twin(student, path, cfg, 1.0)
        distiller = FeatureDistiller(student, path, cfg, torch.device("cpu"))
        student.train(kind == "snn")
        student(left, right, snr, torch.Generator().manual_seed(3))
        term = distiller.loss(left, right, snr, torch.Generator().manual_seed(3))
        if kind == "cnn":
            assert float(term.detach()) == pytest.approx(0.0, abs=1e-9)
    assert float(term.detach()) > 0.01
    term.backward()
    assert student.encoder_left.stem[0].weight.grad.abs().sum() > 0

    sets = ("train.steps=2", "train.log_every=1", f"train.distill_from={path}")
    assert run(tmp_path / "snn", *override_arguments(sets)) == 0
    logged = [r["distill"] for r in read_records(tmp_path / "snn", "train")]
    assert len(logged) == 2 and all(0 < d < float("inf") for d in logged)

    wider = load_config("tiny", ["model.widths=[8, 16, 24]"])
    with pytest.raises(CheckpointError, match="train.distill_from .*widths"):
        FeatureDistiller(build_model(wider.model), path, wider, torch.device("cpu"))


def test_a_hybrid_stage_validates_its_starting_point(tmp_path: Path) -> None:
    """With --init-from, step 0 is validated: the converted SNN before any SNN step, which
    is what hybrid initialisation alone gives. A resumed run does not repeat it."""
    twin_run = override_arguments(("train.steps=1", "model.kind=cnn"))
    assert run(tmp_path / "twin", *twin_run) == 0
    split = two_pair_split(tmp_path)
    twin = str(tmp_path / "twin" / "model.pt")
    stage = ("train.steps=2", "train.val_every=10", f"data.val_split={split}")
    out = tmp_path / "snn"
    assert run(out, "--init-from", twin, *override_arguments(stage)) == 0
    assert [r["step"] for r in read_records(out, "val")] == [0, 2]

    cfg = load_config("tiny", [f"data.root={SAMPLES}", *stage])
    converted = build_model(cfg.model)
    init_from_twin(converted, twin, cfg, cfg.train.init_bn_scale)
    expected = train_module.validate(converted, train_module.load_val_frames(cfg), cfg)
    assert read_records(out, "val")[0]["psnr_mean"] == pytest.approx(
        expected["psnr_mean"], abs=1e-4
    )

    longer = ("train.steps=3",)
    assert main(["--resume", str(out / "last.pt"), *override_arguments(longer)]) == 0
    assert [r["step"] for r in read_records(out, "val")] == [0, 2, 3]


def test_bad_config_stops_before_training(tmp_path: Path, capsys) -> None:
    assert run(tmp_path, "--set", "model.surrogate=relu") == 2
    err = capsys.readouterr().err
    assert "model.surrogate" in err and "atan" in err
    assert not (tmp_path / "last.pt").exists()


def first_loss(out: Path, *settings: str) -> float:
    """The loss of a one-step tiny run with ``settings`` (dotted overrides)."""
    one_step = ("train.steps=1", "train.log_every=1", *settings)
    assert run(out, *override_arguments(one_step)) == 0
    return read_records(out, "train")[0]["loss"]


def test_both_memory_formats_compute_the_same_loss(tmp_path: Path) -> None:
    """channels_last changes only the layout: in float32 the first step's loss is the
    contiguous one, and a run may be resumed in the other layout."""
    losses = {
        layout: first_loss(
            tmp_path / layout,
            "train.precision=float32",
            f"train.memory_format={layout}",
        )
        for layout in ("channels_last", "contiguous")
    }
    assert losses["channels_last"] == pytest.approx(losses["contiguous"], rel=1e-5)
    last = tmp_path / "contiguous" / "last.pt"
    switch = ("train.steps=3", "train.memory_format=channels_last")
    assert main(["--resume", str(last), *override_arguments(switch)]) == 0
    assert load_checkpoint(last)["step"] == 3


@pytest.mark.skipif(
    not fast_bfloat16(torch.device("cpu")),
    reason="this CPU has no AMX, so the trainer does not autocast to bfloat16 on it",
)
def test_bfloat16_on_a_cpu_autocasts_and_gives_the_float32_loss(tmp_path: Path) -> None:
    """``train.precision=bfloat16`` runs the CPU convolutions in bfloat16; the first
    step's loss stays within bfloat16 rounding of the float32 one."""
    conv = torch.nn.Conv2d(3, 4, 3)
    with mixed_precision(torch.device("cpu"), "bfloat16"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16
    with mixed_precision(torch.device("cpu"), "float32"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.float32
    losses = {
        precision: first_loss(tmp_path / precision, f"train.precision={precision}")
        for precision in ("float32", "bfloat16")
    }
    assert losses["bfloat16"] != losses["float32"]
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=2e-2)


def test_frozen_batchnorm_keeps_the_running_statistics(tmp_path: Path) -> None:
    """A stage with ``train.freeze_bn`` normalises with the starting point's running
    statistics and leaves them as they were, while convolutions and BN scales learn;
    without it the statistics move."""
    assert run(tmp_path / "start", "--set", "train.steps=2") == 0
    start = load_checkpoint(tmp_path / "start" / "model.pt")["model"]
    ends = {}
    for frozen in ("true", "false"):
        out = tmp_path / f"frozen_{frozen}"
        stage = ("train.steps=3", f"train.freeze_bn={frozen}")
        init = ("--init-from", str(tmp_path / "start" / "model.pt"))
        assert run(out, *init, *override_arguments(stage)) == 0
        ends[frozen] = load_checkpoint(out / "last.pt")["model"]
    bn = "encoder_left.stem.1"
    for buffer in ("running_mean", "running_var", "num_batches_tracked"):
        key = f"{bn}.{buffer}"
        assert torch.equal(ends["true"][key], start[key])
        assert not torch.equal(ends["false"][key], start[key])
    for learned in (f"{bn}.weight", "encoder_left.stem.0.weight"):
        assert not torch.equal(ends["true"][learned], start[learned])


def test_weight_average_moves_by_one_minus_decay() -> None:
    """Each update takes ``1 - decay`` of the step from the average to the model for
    weights and running statistics (once for an encoder shared by both views), and
    copies integer buffers."""
    cfg = load_config("tiny")
    model = build_model(cfg.model, cfg.channel)
    average = WeightAverage(model, decay=0.75)
    before = {k: v.clone() for k, v in average.model.state_dict().items()}
    with torch.no_grad():
        for value in [*model.parameters(), *model.buffers()]:
            value.add_(1.0 if value.is_floating_point() else 7)
    average.update(model)
    after = average.model.state_dict()
    assert average.updates == 1
    assert not any(p.requires_grad for p in average.model.parameters())
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            expected = 0.75 * before[name] + 0.25 * value
            assert torch.allclose(after[name], expected, atol=1e-6), name
        else:
            assert torch.equal(after[name], value), name


def test_moving_average_is_what_the_run_validates_and_exports(tmp_path: Path) -> None:
    """With ``train.ema_decay`` validation, the exported model and ``load_model`` on
    any checkpoint use the averaged weights, not the last trained ones."""
    split = two_pair_split(tmp_path)
    stage = (
        "train.steps=4",
        "train.val_every=4",
        "train.ema_decay=0.6",
        "train.lr=0.01",
        f"data.val_split={split}",
    )
    out = tmp_path / "run"
    assert run(out, *override_arguments(stage)) == 0
    last = load_checkpoint(out / "last.pt")
    exported = load_checkpoint(out / "model.pt")
    assert "ema" not in exported and last["ema"]["updates"] == 4
    key = "encoder_left.stem.0.weight"
    assert not torch.equal(last["ema"]["model"][key], last["model"][key])
    assert torch.equal(exported["model"][key], last["ema"]["model"][key])

    averaged, cfg = load_model(out / "last.pt")
    assert torch.equal(averaged.state_dict()[key], last["ema"]["model"][key])
    trained = build_model(cfg.model, cfg.channel)
    trained.load_state_dict(last["model"])
    frames = train_module.load_val_frames(cfg)
    logged = read_records(out, "val")[-1]["psnr_mean"]
    assert train_module.validate(averaged, frames, cfg)["psnr_mean"] == pytest.approx(
        logged, abs=1e-4
    )
    assert train_module.validate(trained, frames, cfg)["psnr_mean"] != pytest.approx(
        logged, abs=1e-4
    )


def test_a_gated_stage_starts_from_an_ungated_model(tmp_path: Path) -> None:
    """``--init-from`` an ungated checkpoint into a model with ``model.fusion_gate``: the
    weights are copied, and the gates start open."""
    assert run(tmp_path / "plain", "--set", "train.steps=1") == 0
    cfg = load_config("tiny", ["model.fusion_gate=true"])
    gated = build_model(cfg.model)
    init_from_twin(gated, str(tmp_path / "plain" / "model.pt"), cfg, 1.0)
    plain = load_checkpoint(tmp_path / "plain" / "model.pt")["model"]
    key = "decoder.scales.0.fusion.project.weight"
    assert torch.equal(gated.state_dict()[key], plain[key])
    gate = gated.decoder.scales[0].fusion.gate
    assert torch.sigmoid(gate.bias).item() == pytest.approx(0.88, abs=0.01)


def test_a_run_killed_at_any_moment_resumes_on_the_same_curve(tmp_path: Path) -> None:
    """SIGKILL at a random step: the run resumes from its last checkpoint (at most one
    interval back), logs no step twice, and ends with the weights and the loss curve of
    an uninterrupted run."""
    sets = ("train.steps=10", "train.ckpt_every=2", "train.log_every=1")
    assert run(tmp_path / "straight", *override_arguments(sets)) == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "trainer", *TINY_ON_SAMPLES, "--out", str(killed)]
    proc = subprocess.Popen(
        [*cmd, *override_arguments(sets)],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    at_step = int(torch.randint(3, 8, ()).item())

    def reached() -> bool:
        return len(read_records(killed, "train")) >= at_step

    try:
        wait_until(reached, 120, f"step {at_step}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = load_checkpoint(killed / "last.pt")["step"]
    assert at_step - 2 <= saved <= at_step + 1
    assert main(["--resume", str(killed / "last.pt")]) == 0
    straight = read_records(tmp_path / "straight", "train")
    resumed = read_records(killed, "train")
    assert [r["step"] for r in resumed] == list(range(1, 11))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(killed / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
