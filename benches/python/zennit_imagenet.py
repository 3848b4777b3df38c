"""Zennit on a torchvision network, the reference `lrp batch` is measured against at ImageNet size (outside CI).

    python benches/python/zennit_imagenet.py FAMILY INPUTS.npy [BATCH]

FAMILY is a torchvision model name (resnet50, vgg16, mobilenet_v2, efficientnet_b0, ...); INPUTS.npy holds the
images `[N, 3, 224, 224]` (lrp prepare writes them). The network gets random weights (speed does not depend on
them); batch norms are merged into the convolutions before them (Zennit's canonizer), as lrp's import folds them.
Every convolution and dense layer takes ε (1e-6), activations pass relevance on: `lrp batch --rule epsilon`.
Two threads (this project's machines). Prints one JSON line: the seconds of the explanation itself (in-process,
model built and warmed up before; the median of REPEATS passes over all the images, with the fastest and slowest
pass), explanations per second, the forward pass alone per second at the same batch
size, and the peak resident memory of the process.

Needs torch, torchvision and zennit (pip install torch torchvision zennit).
"""
import json, resource, statistics, sys, time

import numpy as np
import torch
import torchvision
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import LayerMapComposite
from zennit.rules import Epsilon, Pass
from zennit.types import Activation, Convolution, Linear


# Timed passes over all the images (after a warm-up); the median is reported, with the fastest and slowest pass.
REPEATS = 3


def main():
    family, inputs = sys.argv[1], sys.argv[2]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.from_numpy(np.load(inputs)).float()
    m = getattr(torchvision.models, family)(weights=None).eval()
    comp = LayerMapComposite(
        [(Activation, Pass()), (Convolution, Epsilon(1e-6)), (Linear, Epsilon(1e-6))],
        canonizers=[SequentialMergeBatchNorm()],
    )

    def explain(xb):
        with Gradient(m, comp) as attr:
            out = m(xb)
            onehot = torch.zeros_like(out)
            idx = out.argmax(1)
            onehot[range(len(xb)), idx] = out[range(len(xb)), idx]
            _, rel = attr(xb.clone().requires_grad_(True), onehot)
        return rel

    explain(x[:batch])  # warm-up at the batch size measured (torch prepares its kernels per shape: a first batch of 8
    # took 11 s where the next took 2.7 s)
    # Every image REPEATS times over: one pass over the images moved 3× between sittings on EfficientNet-B0.
    passes = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            explain(x[i:i + batch])
        passes.append(time.perf_counter() - t0)
    forwards = []
    with torch.no_grad():
        m(x[:batch])
        for _ in range(REPEATS):
            t1 = time.perf_counter()
            for i in range(0, len(x), batch):
                m(x[i:i + batch])
            forwards.append(time.perf_counter() - t1)
    seconds, forward = statistics.median(passes), statistics.median(forwards)
    print(json.dumps({
        "family": family,
        "images": len(x),
        "batch": batch,
        "repeats": REPEATS,
        "zennit_seconds": round(seconds, 3),
        "zennit_seconds_min_max": [round(min(passes), 3), round(max(passes), 3)],
        "zennit_per_second": round(len(x) / seconds, 3),
        "torch_forward_per_second": round(len(x) / forward, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "zennit": __import__("zennit").__version__ if hasattr(__import__("zennit"), "__version__") else "?",
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
