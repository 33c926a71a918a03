"""The inference LIF with and without its native kernel, on the bundled SNN's layer shapes.

Times :func:`shared.model.neurons.lif_inference` on channels-last inputs of the shapes the
bundled SNN's neurons see for one stereo frame (T = 4 steps of 2 views), once as the
native one-pass kernel runs it and once as the three torch passes per step run it (the
fallback where the kernels cannot be built), at one thread. Prints one JSON record per
shape with the median of ``--repeats`` calls in ms.

Usage::

    python scripts/bench_lif.py --repeats 21
"""

from __future__ import annotations

import argparse
import json
from unittest import mock

import torch

from shared.bench import median_ms
from shared.model import neurons
from shared.model.inference import keep_freed_memory

#: ``[T * views, C, H, W]`` of the bundled SNN's neuron inputs at 128x256.
SHAPES = ((8, 32, 128, 256), (8, 64, 64, 128), (8, 192, 32, 64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    v0 = torch.zeros(())
    for shape in SHAPES:
        x = 1.5 * torch.randn(shape).contiguous(memory_format=torch.channels_last)
        x = x.view(4, shape[0] // 4, *shape[1:])

        def step() -> object:
            return neurons.lif_inference(x, v0, 0.5, 1.0, soft_reset=False)

        native = median_ms(step, args.repeats)
        with mock.patch.object(neurons, "_native_lif", return_value=None):
            passes = median_ms(step, args.repeats)
        record = {"shape": list(shape), "native_ms": native, "torch_passes_ms": passes}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
