"""The README's ImageNet speed table, measured in one sitting (outside CI):

    python benches/python/imagenet_table.py EXPORTS_DIR INPUTS16.npy [FAMILY ...]

EXPORTS_DIR holds `FAMILY-legacy.onnx`, torchvision networks at 224×224 exported with `torch.onnx.export`
(hundreds of MB: keep them out of the repository); INPUTS16.npy holds 16 images `[16, 3, 224, 224]`
(`lrp prepare --image PHOTOS --model M.onnx --out X.npy`). For each family, in this order in one run:
`lrp batch --rule epsilon` over the 16 images (whole process, default flags, model loading included; the median
of 3, with the run's own seconds from its manifest and the peak memory), `lrp explain` of the first image alone,
`lrp predict` over the 16 images and `lrp info` (LRP ÷ forward: batch and predict, each less the start-up and
loading that info measures), and Zennit on the same architecture and images (`zennit_imagenet.py`, batch 8, in-process). The machine's GEMM
rate and the cost of a fresh 4 KiB page come from `cargo bench --bench gemm` in the same run. Prints a Markdown
table, the one-photo runs' page faults at that cost, and the raw figures as JSON.
"""
import json, os, re, statistics, subprocess, sys, tempfile, time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LRP = os.path.join(ROOT, "target", "release", "lrp")
HERE = os.path.dirname(os.path.abspath(__file__))
# One ε explanation (forward + transposed pass), GFLOP, at 224×224: twice the forward pass's multiply-adds × 2.
FORWARD_GMAC = {"resnet50": 4.09, "vgg16": 15.47, "mobilenet_v2": 0.30, "efficientnet_b0": 0.39}


def timed(cmd, faults=False):
    """Wall seconds and peak resident MiB of a command (GNU time); with `faults`, its minor page faults too."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %R"] + cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd}: {p.stderr}")
    peak, minor = p.stderr.strip().splitlines()[-1].split()
    return (wall, int(peak) / 1024, int(minor)) if faults else (wall, int(peak) / 1024)


def machine_rates():
    """The GEMM rate (GFLOP/s, the fastest `gemm/` case) and the microseconds a fresh 4 KiB page costs
    (`memory/first-touch-4KiB-page`), both from `cargo bench --bench gemm`."""
    p = subprocess.run(["cargo", "bench", "--bench", "gemm", "--", "gemm/|memory/"], capture_output=True, text=True,
                       cwd=ROOT)
    scale = {"G": 1e9, "M": 1e6, "K": 1e3}
    found = re.findall(r"^(\S+)\n\s+time:.*\n\s+thrpt:\s+\[\S+ \S+ (\S+) (G|M|K)elem/s", p.stdout, re.M)
    rates = [float(v) * scale[u] / 1e9 for name, v, u in found if name.startswith("gemm/")]
    pages = [float(v) * scale[u] for name, v, u in found if name.startswith("memory/first-touch")]
    if not rates or not pages:
        raise SystemExit("no GEMM rate or first-touch cost in: " + p.stdout[-2000:])
    return max(rates), 1e6 / pages[0]


def main():
    exports, inputs = sys.argv[1], os.path.abspath(sys.argv[2])
    families = sys.argv[3:] or ["resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0"]
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    n = np.load(inputs, mmap_mode="r").shape[0]
    tmp = tempfile.mkdtemp(prefix="lrp-imagenet-")
    one = os.path.join(tmp, "one.npy")
    np.save(one, np.load(inputs)[:1])
    gflops, page_us = machine_rates()
    rows = []
    for fam in families:
        model = os.path.join(exports, f"{fam}-legacy.onnx")
        walls, peaks, inrun = [], [], []
        for k in range(3):
            out = os.path.join(tmp, f"{fam}-{k}")
            w, p = timed([LRP, "batch", "--model", model, "--input", inputs, "--rule", "epsilon", "--out", out])
            walls.append(w)
            peaks.append(p)
            inrun.append(json.load(open(os.path.join(out, "manifest.json")))["timings"]["seconds"])
        singles = sorted(timed([LRP, "explain", "--model", model, "--input", one, "--rule", "epsilon",
                                "--out", os.path.join(tmp, "one-r.npy")], faults=True) for _ in range(3))
        single, single_faults = singles[1][0], singles[1][2]
        # lrp's own forward pass over the same images (`lrp predict`), and the start-up + loading both commands
        # pay (`lrp info`): LRP ÷ forward compares the two without it.
        forward = statistics.median(timed([LRP, "predict", "--model", model, "--input", inputs,
                                           "--out", os.path.join(tmp, "logits.npy")])[0] for _ in range(3))
        load = statistics.median(timed([LRP, "info", "--model", model])[0] for _ in range(3))
        z = subprocess.run([sys.executable, os.path.join(HERE, "zennit_imagenet.py"), fam, inputs, "8"],
                           capture_output=True, text=True, cwd=ROOT)
        if z.returncode != 0:
            raise SystemExit(z.stderr)
        zj = json.loads(z.stdout.strip().splitlines()[-1])
        row = {
            "family": fam,
            "lrp_whole_s": statistics.median(walls),
            "lrp_per_s": n / statistics.median(walls),
            "lrp_in_run_s": statistics.median(inrun),
            "lrp_peak_mib": max(peaks),
            "lrp_one_photo_s": single,
            "lrp_one_photo_minor_faults": single_faults,
            "first_touch_us_per_page": page_us,
            "lrp_forward_whole_s": forward,
            "lrp_load_s": load,
            "lrp_over_forward": (statistics.median(walls) - load) / (forward - load),
            "zennit_per_s": zj["zennit_per_second"],
            "zennit_per_s_range": [n / t for t in reversed(zj["zennit_seconds_min_max"])],
            "zennit_peak_mib": zj["peak_rss_mib"],
            "torch_forward_per_s": zj["torch_forward_per_second"],
            "gemm_gflops": gflops,
            "zennit": zj["zennit"],
            "torch": zj["torch"],
        }
        gf = 4 * FORWARD_GMAC.get(fam, float("nan"))
        row["in_run_gflops"] = gf * n / row["lrp_in_run_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"| network (16 images, 224×224, ε, 2 threads; GEMM {gflops:.0f} GFLOP/s in the same run) | lrp /s whole "
          "process | Zennit /s (batch 8, in-process; median of 3 passes, slowest–fastest) | ratio (range) | lrp in-run "
          "GFLOP/s (share of GEMM) | LRP ÷ lrp's forward | one photo ÷ per-image time at 16 | peak memory lrp / "
          "Zennit |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["zennit_per_s_range"]
        print(f"| {r['family']} | {r['lrp_per_s']:.1f} | {r['zennit_per_s']:.1f} ({lo:.1f}–{hi:.1f}) | "
              f"{r['lrp_per_s'] / r['zennit_per_s']:.2f}× ({r['lrp_per_s'] / hi:.2f}–{r['lrp_per_s'] / lo:.2f}) | "
              f"{r['in_run_gflops']:.0f} ({100 * r['in_run_gflops'] / gflops:.0f}%) | {r['lrp_over_forward']:.2f} | "
              f"{r['lrp_one_photo_s'] / (r['lrp_whole_s'] / n):.2f} | "
              f"{r['lrp_peak_mib'] / 1024:.2f} / {r['zennit_peak_mib'] / 1024:.2f} GiB |")
    print()
    print(f"A fresh 4 KiB page costs {page_us:.2f} µs on this machine (`memory/first-touch-4KiB-page`, one thread, "
          "same run). One photo, whole process (the middle of 3 runs):")
    for r in rows:
        f = r["lrp_one_photo_minor_faults"]
        print(f"- {r['family']}: {1e3 * r['lrp_one_photo_s']:.0f} ms against {1e3 * r['lrp_whole_s'] / n:.0f} ms a "
              f"photo at {n}; {f:,} minor faults × {page_us:.2f} µs = {1e-3 * f * page_us:.0f} ms of first touches "
              "(on one thread)")


if __name__ == "__main__":
    main()
