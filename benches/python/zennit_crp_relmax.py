"""zennit-crp's FeatureVisualization.run (RelMax and ActMax) on a CNN exported to ONNX with the shipped CNN's
architecture, over an MNIST split: the reference that `lrp concepts` is timed against (outside CI).

    python benches/python/zennit_crp_relmax.py MODEL.onnx data/mnist train LAYER_INDEX [LIMIT]

Needs torch, onnx, zennit and zennit-crp (pip install torch onnx zennit-crp). Prints the whole time of the run,
the samples per second and where the results were written. LAYER_INDEX is lrp's #N (the N-th layer with weights).
"""
import gzip, sys, time, tempfile
import numpy as np
import onnx, onnx.numpy_helper
import torch
from torch import nn
from zennit.composites import EpsilonPlusFlat
from crp.attribution import CondAttribution
from crp.concepts import ChannelConcept
from crp.visualization import FeatureVisualization


def idx(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def model(path):
    net = nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    params = [p for p in net.parameters()]
    arrays = [a for a in inits.values() if a.ndim >= 1]
    # In graph order: weight, bias of each layer; a Gemm weight may be stored transposed.
    for p, a in zip(params, arrays):
        t = torch.from_numpy(np.array(a, dtype=np.float32))
        if t.shape != p.shape:
            t = t.T
        assert t.shape == p.shape, (t.shape, p.shape)
        p.data.copy_(t)
    return net.eval()


class Split(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self.x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        self.y = torch.from_numpy(labels.astype(np.int64))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def main():
    path, data, split, layer = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    limit = int(sys.argv[5]) if len(sys.argv) > 5 else None
    torch.set_num_threads(2)
    stem = "train" if split == "train" else "t10k"
    images = idx(f"{data}/{stem}-images-idx3-ubyte.gz")
    labels = idx(f"{data}/{stem}-labels-idx1-ubyte.gz")
    ds = Split(images, labels)
    net = model(path)
    with torch.no_grad():
        acc = (net(ds.x[:2000]).argmax(1) == ds.y[:2000]).float().mean().item()
    weighted = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    name = weighted[layer]
    n = limit or len(ds)
    out = tempfile.mkdtemp(prefix="crp-fv-")
    t0 = time.perf_counter()
    fv = FeatureVisualization(CondAttribution(net), ds, {name: ChannelConcept()}, path=out)
    fv.run(EpsilonPlusFlat(), 0, n, batch_size=256, checkpoint=n)
    dt = time.perf_counter() - t0
    print(f"zennit-crp FeatureVisualization.run: {n} samples at {name} (#{layer}) in {dt:.2f} s = {n / dt:.0f} /s "
          f"(accuracy on the first 2000: {acc:.4f}); results in {out}")


if __name__ == "__main__":
    main()
