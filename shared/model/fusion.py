"""Row-wise cross-view (parallax) attention between the two views of a rectified pair."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared.config import ModelConfig
from shared.model.blocks import time_mean
from shared.model.neurons import make_neuron

#: Initial logit of the fusion gate: sigmoid(2) = 0.88, open but not saturated, so that
#: the gate's gradient (sigmoid' = 0.10) lets a short fine-tune learn to close it.
GATE_OPEN_LOGIT = 2.0


def row_attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor) -> Tensor:
    r"""Attention along each image row: every query pixel attends to the key pixels of the
    same row of the other view (rectified views: matches lie on the same row).

    .. math:: A = \mathrm{softmax}_{x'}\!\left(\frac{Q_{y,x} \cdot K_{y,x'}}{\sqrt d}
              + M_{x,x'}\right),\qquad O_{y,x} = \sum_{x'} A_{y,x,x'} V_{y,x'}

    The softmax runs over the key columns ``x'`` of one row of one image, never over the
    batch or over rows.

    Input
    -----
    query, key : [N, d, H, W], float
    value : [N, c, H, W], float
    mask : [W, W] bool, True where query column x may attend key column x'

    Output
    ------
    out : [N, c, H, W], float
    """
    q = query.permute(0, 2, 3, 1)
    k = key.permute(0, 2, 1, 3)
    scores = torch.matmul(q, k) / math.sqrt(query.shape[1])
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    out = torch.matmul(weights, value.permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2)


def parallax_masks(width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Which columns each view may look at in the other: a left pixel at x sees the right
    view at x' <= x (disparity >= 0), a right pixel at x sees the left view at x' >= x.

    Output: ``(left_from_right, right_from_left)``, each ``[W, W]`` bool (query, key).
    """
    cols = torch.arange(width, device=device)
    left_from_right = cols[None, :] <= cols[:, None]
    return left_from_right, left_from_right.T


class ParallaxAttention(nn.Module):
    """Stereo fusion: each view borrows features from the other along epipolar rows.

    After parallax attention in PASSRnet (Wang et al., CVPR 2019), applied to spike rates:
    a neuron layer turns the stream into spikes, their mean over time feeds 1x1 query, key
    and value projections, and the attended values return through a zero-initialised 1x1
    projection added to the stream at every time step (so the block starts as identity).

    With ``model.fusion_gate`` a per-pixel confidence
    ``g = sigmoid(conv([rates, fused, cos(v, fused)]))`` in (0, 1) scales what the other
    view adds, so that the decoder can learn to ignore a view that does not match
    (PASSRnet's valid masks serve the same purpose); ``cos(v, fused)`` is the cosine
    similarity of a pixel's own value and the value it attended to in the other view. The
    gate starts open (``g`` = 0.88).

    Input
    -----
    u : [T, 2N, C, H, W], float, left views in ``[:, :N]``, right views in ``[:, N:]``

    Output
    ------
    u_fused : [T, 2N, C, H, W], float
    """

    def __init__(self, cfg: ModelConfig, channels: int) -> None:
        super().__init__()
        dim = cfg.fusion_dim
        self.neuron = make_neuron(cfg)
        self.query = nn.Conv2d(channels, dim, 1)
        self.key = nn.Conv2d(channels, dim, 1)
        self.value = nn.Conv2d(channels, dim, 1)
        self.project = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        self.gate = nn.Conv2d(channels + dim + 1, 1, 1) if cfg.fusion_gate else None
        if self.gate is not None:
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, GATE_OPEN_LOGIT)
        if cfg.kind == "snn":  # q/k/v read the time-mean of spikes (energy accounting)
            for conv in (self.query, self.key, self.value):
                conv.spike_steps = cfg.time_steps
        self.last_matmul_macs = 0

    def forward(self, u: Tensor) -> Tensor:
        rates = time_mean(self.neuron(u))
        q, k, v = self.query(rates), self.key(rates), self.value(rates)
        q_l, q_r = q.chunk(2)
        k_l, k_r = k.chunk(2)
        v_l, v_r = v.chunk(2)
        left_mask, right_mask = parallax_masks(u.shape[-1], u.device)
        fused = torch.cat(
            (
                row_attention(q_l, k_r, v_r, left_mask),
                row_attention(q_r, k_l, v_l, right_mask),
            )
        )
        n, d, h, w = q.shape
        self.last_matmul_macs = n * h * w * w * (d + v.shape[1])
        added = self.project(fused)
        if self.gate is not None:
            match = F.cosine_similarity(v, fused, dim=1, eps=1e-6)[:, None]
            cue = torch.cat((rates, fused, match), dim=1)
            added = added * torch.sigmoid(self.gate(cue))
        return u + added[None]
