"""Deep change inference speed on this CPU (issue 18): the new path against the fp32 baseline, in one run.

13-band FC-Siam-diff (seeded, untrained: speed does not depend on the weights), ``--threads`` threads (default
the usable cores). Two measurements, each repeated ``--repeats`` times with the variants alternating, reported
as median (min-max) and as ratios against the baseline measured in the same run:

* ``network``: the network alone on one 512 x 512 pair: fp32 with the default memory layout (baseline) vs
  ``channels_last`` + bf16 autocast (where the CPU has native bf16; fp32 otherwise, said in the output);
* ``city``: ``predict_scene`` on a whole OSCD city (abudhabi, 799 x 785 px, from its band folders), the call
  itself after imports and model loading: baseline = fp32, 256-px tiles (the previous defaults) vs the new
  defaults (512-px tiles, bf16 where supported, flips batched, next strip read while computing), without and
  with the 4 flips, and onnxruntime (fp32) on the new tiling where it is installed. The probabilities of the new
  path are compared with the baseline's (max |dp|).

    flock /tmp/minescape-heavy.lock .venv/bin/python bench/bench_deep_speed.py [--repeats 3] [--threads 2]
        [--cases network,city,loaded,s2tile]

``s2tile`` runs the CLI on a ``--size``² pair of 13-band stacks: fp32, the new defaults, the new defaults with
``--no-overviews`` (what the two outputs' overview levels cost), and ``--flip-repeats`` runs with the 4 flips.
``loaded`` runs the CLI (fp32 on a CPU without native bf16, no flips) on a 1536 x ``--size`` strip while a
spinning process keeps one core busy: the default (a tile on every core) against ``--threads 1`` (what the
load-aware default of earlier releases chose there).

Timings on a shared machine move with the other jobs: read the ratios, and say that the machine was loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("MINESCAPE_PROGRESS", "0")
ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/tmp/minescape-bench-deep-speed")
CITY = "abudhabi"


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--oscd", default=str(ROOT.parent / "shared" / "data" / "oscd"))
    ap.add_argument("--skip-city", action="store_true")
    ap.add_argument("--cases", default="network,city",
                    help="network, city, loaded, s2tile, train, batch (comma-separated)")
    ap.add_argument("--size", type=int, default=10980, help="s2tile: pixels per side")
    ap.add_argument("--flip-repeats", type=int, default=1, help="s2tile: runs with the 4 flips")
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    t_import = time.perf_counter()
    import numpy as np
    import torch

    from minescape.change.deep.infer import predict_scene
    from minescape.change.deep.model import ChangeModel, build_model, load_model, save_model
    from minescape.compute import Compute, resolve_compute
    from minescape.sentinel2 import ALL_BANDS

    t_import = time.perf_counter() - t_import
    new = resolve_compute("cpu", "auto", args.threads)
    base = Compute("cpu", "fp32", new.threads)
    torch.set_num_threads(new.threads)  # the network case: one call on --threads threads (the engines hold their own)
    print(f"threads {new.threads}; new path: {new.describe()}; imports {t_import:.2f} s", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model_path = WORK / "fc-siam-diff_13.pt"
    save_model(model_path, ChangeModel(net=build_model("fc-siam-diff", 13), arch="fc-siam-diff",
                                       bands=tuple(ALL_BANDS), mean=np.full(13, 0.1, np.float32),
                                       std=np.full(13, 0.05, np.float32), threshold=0.5))
    results: dict = {"threads": new.threads, "new": new.describe(), "repeats": args.repeats}

    if "train" in cases:
        results["train_steps_s"] = train_steps(args, new)
    if "batch" in cases:
        results["batch_ms"] = batch_building(args)
    if "loaded" in cases or "s2tile" in cases:
        results.update(cli_cases(args, cases, model_path))
    if "network" not in cases and "city" not in cases:
        (WORK / "results.json").write_text(json.dumps(results, indent=2))
        print(f"wrote {WORK / 'results.json'}")
        return

    # -- the network alone
    net = load_model(model_path).net.eval()
    x = torch.randn(1, 13, 512, 512)
    xc = x.contiguous(memory_format=torch.channels_last)
    net_cl = load_model(model_path).net.eval().to(memory_format=torch.channels_last)
    # what prediction runs: BN folded, and on a bf16 CPU the compiled bf16 copy (minescape.inference_net)
    from minescape.inference_net import CpuBf16Net, inference_net

    prepared = inference_net(net_cl, new)
    xp = xc.to(torch.bfloat16, memory_format=torch.channels_last) if isinstance(prepared, CpuBf16Net) else xc
    times: dict[str, list[float]] = {"fp32": [], "new": [], "prepared": []}
    with torch.inference_mode():
        net(x, x)
        with new.autocast():
            net_cl(xc, xc)
        prepared(xp, xp)  # compiled here, at its first call
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            net(x, x)
            times["fp32"].append(512 * 512 / (time.perf_counter() - t0) / 1e6)
            t0 = time.perf_counter()
            with new.autocast():
                net_cl(xc, xc)
            times["new"].append(512 * 512 / (time.perf_counter() - t0) / 1e6)
            t0 = time.perf_counter()
            with nullcontext() if isinstance(prepared, CpuBf16Net) else new.autocast():
                prepared(xp, xp)
            times["prepared"].append(512 * 512 / (time.perf_counter() - t0) / 1e6)
    results["network_mpix_s"] = times
    print(f"network 512x512: fp32 {summary(times['fp32'])} Mpix/s, new {summary(times['new'])} Mpix/s, "
          f"ratio {statistics.median(times['new']) / statistics.median(times['fp32']):.2f}x; as prediction "
          f"runs it ({type(prepared).__name__}: BN folded{', compiled bf16' if xp is not xc else ''}) "
          f"{summary(times['prepared'])} Mpix/s, ratio "
          f"{statistics.median(times['prepared']) / statistics.median(times['fp32']):.2f}x", flush=True)

    # -- a whole OSCD city, the prediction call itself
    city = Path(args.oscd) / "images" / CITY
    if "city" in cases and not args.skip_city and city.is_dir():
        model = load_model(model_path)
        variants = {"baseline": dict(tile=256, compute=base), "new": dict(tile=512, compute=new)}
        try:  # onnxruntime (fp32) on the new tiling, where it is installed
            from minescape.change.deep.onnx_backend import export_onnx

            onnx_path = export_onnx(model, WORK / "fc-siam-diff_13.onnx")
            variants["onnx"] = dict(tile=512, compute=new, backend="onnx", onnx_paths=[onnx_path])
        except Exception as exc:  # noqa: BLE001 - optional package: report and go on
            print(f"onnx variant skipped: {str(exc).splitlines()[0]}", flush=True)
        speeds: dict[str, list[float]] = {f"{v} {f}": [] for v in variants for f in ("no flips", "flips")}
        probs: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for flips in (False, True):
                for name, kw in variants.items():
                    out = WORK / f"{name}_{flips}"
                    t0 = time.perf_counter()
                    res = predict_scene(model, city / "imgs_1", city / "imgs_2", out / "p.tif", out / "m.tif",
                                        overlap=32, tta=flips, **kw)
                    sec = time.perf_counter() - t0
                    speeds[f"{name} {'flips' if flips else 'no flips'}"].append(res.pixels / sec / 1e6)
                    from minescape.geo.raster import read_raster

                    probs[f"{name} {flips}"] = read_raster(out / "p.tif").data[0]
        results["city_mpix_s"] = speeds
        for flips in ("no flips", "flips"):
            b, n = speeds[f"baseline {flips}"], speeds[f"new {flips}"]
            print(f"city {CITY} {flips}: baseline {summary(b)} Mpix/s, new {summary(n)} Mpix/s, ratio "
                  f"{statistics.median(n) / statistics.median(b):.2f}x"
                  + (f"; onnxruntime {summary(speeds[f'onnx {flips}'])} Mpix/s" if f"onnx {flips}" in speeds
                     else ""), flush=True)
        for flips in (False, True):
            a, b = probs[f"baseline {flips}"], probs[f"new {flips}"]
            ok = np.isfinite(a) & np.isfinite(b)
            d = float(np.abs(a - b)[ok].max())
            results[f"max_abs_dp_{'flips' if flips else 'no_flips'}"] = d
            print(f"probabilities new vs baseline ({'flips' if flips else 'no flips'}): max |dp| {d:.2e} "
                  f"(bf16 and the tile layout)", flush=True)
    (WORK / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {WORK / 'results.json'}")


def batch_building(args) -> dict:
    """Milliseconds to build one training batch on the CPU (8 crops of 64 px, 13 bands, from 9 scenes of an
    OSCD city's size, rotations, flips, date swaps, jitter): the grouped gather (one per scene: the GPU path, and
    the CPU path before session 10) vs the crops copied one by one (the CPU path now). The same batches."""
    import numpy as np
    import torch
    from measure import fmt, ratio

    from minescape.change.deep import batches as B

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    scenes = []
    for _ in range(9):
        x = rng.normal(size=(13, 500, 520)).astype(np.float32)
        scenes.append((x, x + 0.1, (rng.random((500, 520)) < 0.05).astype(np.uint8)))
    prepared = B.to_device(scenes, pad=64)
    weights = np.full(9, 1 / 9)
    variants = {"grouped": B._gather_grouped, "per crop": B._gather_per_crop}
    per_crop = B._gather_per_crop
    ms: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for rep in range(args.repeats):
            for name, gather in variants.items():
                B._gather_per_crop = gather  # what make_batch calls on a CPU
                draw = np.random.default_rng(rep)
                t0 = time.perf_counter()
                for _ in range(100):
                    B.make_batch(prepared, weights, draw, size=64, batch=8, focus_change=0.5, swap_dates=True,
                                 jitter=0.1)
                ms[name].append((time.perf_counter() - t0) * 10)
    finally:
        B._gather_per_crop = per_crop
    for name, v in ms.items():
        print(f"training batch, 8 x 64 px, 13 bands, {name}: {fmt(v, ' ms')}", flush=True)
    print(f"batch building, grouped / per crop = {fmt(ratio(ms['grouped'], ms['per crop']), 'x')}", flush=True)
    return ms


def train_steps(args, new) -> dict:
    """Training steps per second on this CPU, fp32 vs bf16 autocast (see the module docstring)."""
    import torch
    from measure import fmt, ratio

    from minescape.change.deep.model import build_model
    from minescape.compute import Compute

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 13, 64, 64, generator=g).contiguous(memory_format=torch.channels_last),
                torch.randn(8, 13, 64, 64, generator=g).contiguous(memory_format=torch.channels_last),
                (torch.rand(8, 1, 64, 64, generator=g) > 0.9).float()) for _ in range(8)]
    variants = {"fp32": Compute("cpu", "fp32", new.threads), "bf16": Compute("cpu", "bf16", new.threads)}
    speeds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, comp in variants.items():
            torch.manual_seed(0)
            net = build_model("fc-ef", 13).to(memory_format=torch.channels_last).train()
            opt = torch.optim.Adam(net.parameters(), lr=1e-3)

            def step(i: int) -> None:
                x1, x2, lab = batches[i % len(batches)]
                with comp.autocast():
                    logits = net(x1, x2)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), lab,
                                                                            pos_weight=torch.tensor(5.0))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            for i in range(5):
                step(i)
            t0 = time.perf_counter()
            for i in range(30):
                step(i)
            speeds[name].append(30 / (time.perf_counter() - t0))
    for name, v in speeds.items():
        print(f"training FC-EF 13 bands, batch 8 x 64 px, {name}: {fmt(v, ' steps/s')}", flush=True)
    print(f"training bf16 / fp32 = {fmt(ratio(speeds['bf16'], speeds['fp32']), 'x')}", flush=True)
    return speeds


def cli_predict(model: Path, t1: Path, t2: Path, out: Path, *extra: str) -> tuple[float, float]:
    """``minescape change predict`` in a new process: ``(wall seconds, peak MB of its process tree)``."""
    import shutil
    import subprocess

    from measure import TreePeak

    shutil.rmtree(out, ignore_errors=True)
    cli = Path(sys.executable).with_name("minescape")
    t0 = time.perf_counter()
    with TreePeak() as peak:
        proc = subprocess.run([str(cli), "change", "predict", str(model), str(t1), str(t2), str(out), *extra],
                              capture_output=True, text=True, env={**os.environ, "MINESCAPE_PROGRESS": "0"})
    sec = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"change predict failed: {proc.stderr[-2000:]}")
    return sec, peak.peak_mb


def cli_cases(args, cases: set[str], model_path: Path) -> dict:
    """The ``s2tile`` and ``loaded`` cases (see the module docstring)."""
    import subprocess

    from measure import fmt, ratio
    from synthetic_pair import write_pair

    from minescape.sentinel2 import ALL_BANDS

    out: dict = {}
    if "loaded" in cases:
        t1, t2 = write_pair(WORK, args.size, rows=1536, bands=ALL_BANDS, strip=512)
        cpu = sorted(os.sched_getaffinity(0))[-1]
        spin = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{cpu}}})\n"
                                 "print('spinning', flush=True)\nwhile True:\n    pass\n"],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert spin.stdout.readline().strip() == "spinning"
            # default: a tile on every core; --threads 1: what the load-aware default (before session 23) ran
            variants = {"default": [], "threads 1": []}
            px = 1536 * args.size / 1e6
            for _ in range(args.repeats):
                for name in variants:
                    extra = [] if name == "default" else ["--threads", name.split()[1]]
                    sec, _ = cli_predict(model_path, t1, t2, WORK / "out_loaded", "--no-tta", *extra)
                    variants[name].append(px / sec)
        finally:
            spin.kill()
            spin.wait()
        out["loaded_mpix_s"] = variants
        for name, v in variants.items():
            print(f"loaded (one core busy), CLI 1536x{args.size}, no flips, {name}: {fmt(v, ' Mpix/s')}",
                  flush=True)
        print(f"loaded: default / --threads 1 = {fmt(ratio(variants['default'], variants['threads 1']), 'x')}",
              flush=True)
    if "s2tile" in cases:
        t1, t2 = write_pair(WORK, args.size, bands=ALL_BANDS, strip=512)
        px = args.size * args.size / 1e6
        runs: dict[str, list[float]] = {"fp32 no flips": [], "new no flips": [], "new no flips, no overviews": [],
                                        "new flips": []}
        peaks: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, extra in (("fp32 no flips", ["--precision", "fp32"]), ("new no flips", []),
                                ("new no flips, no overviews", ["--no-overviews"])):
                sec, mb = cli_predict(model_path, t1, t2, WORK / "out_s2tile", "--no-tta", *extra)
                runs[name].append(px / sec)
                peaks[name].append(mb)
        for _ in range(args.flip_repeats):
            sec, mb = cli_predict(model_path, t1, t2, WORK / "out_s2tile", "--tta")
            runs["new flips"].append(px / sec)
            peaks["new flips"].append(mb)
        out["s2tile_mpix_s"], out["s2tile_peak_mb"] = runs, peaks
        for name, v in runs.items():
            if not v:  # --flip-repeats 0
                continue
            print(f"s2tile CLI {args.size}x{args.size} x13 bands, {name}: {fmt(v, ' Mpix/s')}, "
                  f"peak {fmt(peaks[name], ' MB', 0)}", flush=True)
        print(f"s2tile no flips: new / fp32 = {fmt(ratio(runs['new no flips'], runs['fp32 no flips']), 'x')}",
              flush=True)
        print("s2tile no flips: the outputs' overview levels cost (time with / without) "
              f"{fmt(ratio(runs['new no flips, no overviews'], runs['new no flips']), 'x')}", flush=True)
    return out


if __name__ == "__main__":
    main()
