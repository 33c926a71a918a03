"""The spiking stereo JSCC model: healthy spikes, gradients, latent coding, contract."""

from __future__ import annotations

import pytest
import torch
from conftest import calibrate

from shared.channel import generator_for
from shared.config import load_config
from shared.errors import ConfigError, DataError
from shared.link.hop import DecoderInput, receive, send
from shared.model.fusion import parallax_masks, row_attention
from shared.model.jscc import StereoJSCC
from shared.model.registry import build_model


def default_model(*overrides: str) -> StereoJSCC:
    torch.manual_seed(0)
    return build_model(load_config("default", list(overrides)).model)


@pytest.mark.heavy
def test_every_lif_layer_fires_at_a_healthy_rate_on_a_real_photo(sample_pair) -> None:
    model = default_model()
    model.train()
    out = model(*sample_pair, torch.tensor([5.0]))
    rates = {name: float(r) for name, r in out["rates"].items()}
    assert len(rates) >= 15
    silent_or_saturated = {n: r for n, r in rates.items() if not 0.02 <= r <= 0.5}
    assert not silent_or_saturated


@pytest.mark.heavy
def test_gradient_reaches_the_first_encoder_convolution(sample_pair) -> None:
    model = default_model()
    model.train()
    out = model(*sample_pair, torch.tensor([5.0]))
    loss = (out["x_hat_left"] - sample_pair[0]).square().mean()
    loss.backward()
    grad = model.encoder_left.stem[0].weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.heavy
def test_latent_is_spike_counts_with_every_level(sample_pair) -> None:
    model = calibrate(default_model(), *sample_pair)
    coded = model.encode(*sample_pair)
    latent = coded["latent"]
    assert latent.dtype == torch.uint8 and latent.shape == (2, 1, 6, 32, 64)
    assert coded["shape"] == (6, 32, 64)
    assert set(latent.unique().tolist()) == {0, 1, 2, 3, 4}
    uses = model.channel_uses(128, 256)
    assert uses == {"n": 6144, "k": 98304, "rho": 1 / 16}


def test_zero_latent_through_the_channel_gives_zeros_not_nan() -> None:
    model = default_model()
    latent = torch.full((2, 6, 32, 64), 2, dtype=torch.uint8)  # amplitude 0 everywhere
    z = model.channel.transmit(model.code.channel_input(latent))
    assert torch.equal(z, torch.zeros_like(z))
    snr = torch.tensor([10.0, 10.0])
    use = send(model.code, model.channel, latent, snr, generator_for(0, 0))
    received = receive(model.code, model.channel, use, snr, (6, 32, 64))
    assert received.soft.shape == (2, 6, 32, 64)
    assert torch.isfinite(received.soft).all()


@pytest.mark.heavy
@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("model.kind=cnn",),
        ("model.share_encoder=false",),
        (
            "model.latent=spike_bpsk",
            "model.widths=[8,8,8,8]",
            "model.res_blocks=[0,0,0,1]",
            "model.fusion_scales=[3]",
        ),
    ],
)
def test_forward_equals_encode_channel_decode(sample_pair, overrides) -> None:
    model = default_model(*overrides).eval()
    snr = torch.tensor([3.0, 3.0])
    with torch.no_grad():
        out = model(*sample_pair, snr[:1], generator_for(1, "test"))
    coded = model.encode(*sample_pair)
    latent = coded["latent"].flatten(0, 1)
    use = send(model.code, model.channel, latent, snr, generator_for(1, "test"))
    received = receive(model.code, model.channel, use, snr, coded["shape"])
    halves = model.decode(received)
    code = model.code
    assert torch.equal(code.channel_input(out["latent"]), code.channel_input(latent))
    assert torch.equal(out["soft"], received.soft)
    assert torch.equal(out["x_hat_left"], halves["x_hat_left"])
    assert torch.equal(out["x_hat_right"], halves["x_hat_right"])


@pytest.mark.heavy
def test_outputs_are_images_with_many_distinct_values(sample_pair) -> None:
    model = calibrate(default_model(), *sample_pair)
    with torch.no_grad():
        out = model(*sample_pair, torch.tensor([10.0]))
    x_hat = out["x_hat_left"]
    assert x_hat.shape == sample_pair[0].shape
    assert 0 <= x_hat.min() and x_hat.max() <= 1
    assert x_hat.unique().numel() > 1000


def test_bit_latent_over_a_binary_symmetric_channel(sample_pair) -> None:
    cfg = load_config(
        "default",
        [
            "model.latent=spike_bpsk",
            "model.widths=[8,8,8,8]",
            "model.res_blocks=[0,0,0,1]",
            "model.fusion_scales=[3]",
            "channel.kind=bsc",
            "channel.flip_prob=0.05",
        ],
    )
    model = build_model(cfg.model, cfg.channel)
    model.train()
    out = model(*sample_pair, torch.tensor([0.0]))
    assert set(out["latent"].unique().tolist()) <= {0.0, 1.0}
    assert model.channel_uses(128, 256)["rho"] == pytest.approx(1 / 16)
    (out["x_hat_left"].mean() + out["x_hat_right"].mean()).backward()
    assert model.encoder_left.stem[0].weight.grad.abs().sum() > 0


def test_sizes_must_match_the_stride() -> None:
    model = default_model()
    with pytest.raises(DataError, match="multiple of the model stride 4"):
        model.encode(torch.rand(1, 3, 30, 64), torch.rand(1, 3, 30, 64))
    with pytest.raises(ConfigError, match="model.arch"):
        build_model(load_config("tiny", ["model.arch=resnet"]).model)


def test_row_attention_normalises_over_columns_of_one_row() -> None:
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 4, 5, 7), torch.randn(3, 4, 5, 7), torch.randn(3, 2, 5, 7)
    mask = torch.ones(7, 7, dtype=torch.bool)
    out = row_attention(q, k, v, mask)
    # each output is a convex combination of the same row's values
    low, high = v.amin(dim=3, keepdim=True), v.amax(dim=3, keepdim=True)
    assert ((out >= low - 1e-6) & (out <= high + 1e-6)).all()
    # batch elements and rows are independent: changing image 1, row 2 changes nothing else
    v2 = v.clone()
    v2[1, :, 2, :] += 10
    out2 = row_attention(q, k, v2, mask)
    changed = (out2 - out).abs().sum(dim=(1, 3)) > 1e-6
    assert changed.nonzero().tolist() == [[1, 2]]
    # with one key allowed, attention is a copy: the left query at x=0 sees right x'=0 only
    left_mask, right_mask = parallax_masks(7, torch.device("cpu"))
    assert torch.equal(left_mask, right_mask.T) and left_mask[3, :4].all()
    out3 = row_attention(q, k, v, left_mask)
    assert torch.allclose(out3[..., 0], v[..., 0])


@pytest.mark.heavy
def test_snr_conditioning_changes_the_output(sample_pair) -> None:
    model = calibrate(default_model(), *sample_pair)
    for gate in (s.gate for s in model.decoder.scales):
        torch.nn.init.normal_(gate.mlp[-1].weight)
    soft = torch.randn(2, 6, 32, 64)
    low = model.decode(DecoderInput(soft, torch.tensor([0.0, 0.0])))["x_hat_left"]
    high = model.decode(DecoderInput(soft, torch.tensor([15.0, 15.0])))["x_hat_left"]
    unknown = model.decode(DecoderInput(soft, None))["x_hat_left"]
    assert not torch.equal(low, high) and not torch.equal(low, unknown)


def test_a_closed_fusion_gate_makes_each_view_ignore_the_other(sample_pair) -> None:
    """With ``model.fusion_gate`` the gate starts nearly open; closed, the left view's
    reconstruction no longer depends on the right view's received values."""
    torch.manual_seed(0)
    cfg = load_config("tiny", ["model.fusion_gate=true"])
    model = build_model(cfg.model, cfg.channel)
    left, right = (x[..., :64, :128] for x in sample_pair)
    model = calibrate(model, left, right)
    fusion = model.decoder.scales[0].fusion
    torch.nn.init.normal_(fusion.project.weight)  # make the fusion matter
    assert torch.sigmoid(fusion.gate.bias).item() == pytest.approx(0.88, abs=0.01)
    soft = torch.randn(2, 6, 16, 32)
    other = soft.clone()
    other[1] = torch.randn(6, 16, 32)

    def left_view(received: torch.Tensor) -> torch.Tensor:
        return model.decode(DecoderInput(received, torch.tensor([5.0, 5.0])))[
            "x_hat_left"
        ]

    assert not torch.allclose(left_view(soft), left_view(other), atol=1e-4)
    torch.nn.init.constant_(fusion.gate.bias, -30.0)
    assert torch.allclose(left_view(soft), left_view(other), atol=1e-6)
    model.train()
    out = model(left, right, torch.tensor([5.0]))
    out["x_hat_left"].mean().backward()
    assert fusion.gate.weight.grad is not None
