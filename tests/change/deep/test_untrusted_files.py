"""Files users exchange never run code: a planted pickle in model.pt / checkpoint.pt is refused with one line and
its payload never runs (predict, export, train --resume). Without the optional onnx package, export is one line
and the demo stage skips its ONNX step with a note."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minescape.cli.app import app
from tests.change.deep.conftest import quick_train_args

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[3]


class _Payload:
    """Unpickling this creates ``marker`` (what an attacker's code could do with any file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def plant(path: Path, marker: Path) -> Path:
    """A torch-format file whose unpickling would run the payload."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "minescape-change-model/2", "meta": "{}", "hook": _Payload(marker)}, path)
    return path


def test_planted_payload_is_live_but_never_runs(small_region, tmp_path):
    import torch

    # first prove the planted file really runs code when loaded the unsafe way
    probe = tmp_path / "probe_marker"
    evil = plant(tmp_path / "probe" / "model.pt", probe)
    torch.load(evil, weights_only=False)
    assert probe.read_text() == "pwned"

    marker = tmp_path / "marker"
    model = plant(tmp_path / "evil" / "model.pt", marker)
    r = runner.invoke(app, ["change", "predict", str(model), str(small_region.t1), str(small_region.t2),
                            str(tmp_path / "out"), "--tile", "128", "--threads", "1"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "model.pt: refused" in r.output and not marker.exists()
    r = runner.invoke(app, ["change", "export", str(model)])
    assert r.exit_code == 2 and "model.pt: refused" in r.output and not marker.exists(), r.output
    ckpt_dir = tmp_path / "train"
    plant(ckpt_dir / "checkpoint.pt", marker)
    r = runner.invoke(app, quick_train_args(small_region, ckpt_dir, "--resume"))
    assert r.exit_code == 2 and "checkpoint.pt: refused" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not marker.exists()


def test_plain_pickle_model_is_refused(tmp_path):
    from minescape.change.deep.model import load_model
    from minescape.errors import InputError

    marker = tmp_path / "marker"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(_Payload(marker)))  # not even a torch zip: the legacy pickle path
    try:
        load_model(path)
    except InputError as exc:
        assert str(exc).startswith(str(path))
    else:
        raise AssertionError("a plain pickle was accepted")
    assert not marker.exists()


def test_model_metadata_cannot_make_a_huge_network(tmp_path):
    """A model file whose metadata asks for a giant network (a siam-att a million channels wide: 3.9e15 weights) or
    an option the network does not have is refused with one line before anything is built; the same file with
    honest metadata loads."""
    import json

    import torch

    from minescape.change.deep.model import load_model
    from minescape.errors import InputError
    from tests.change.deep.conftest import saved_model

    good = tmp_path / "good.pt"
    saved_model(good, ("B02", "B03", "B04"), arch="siam-att")
    payload = torch.load(good, weights_only=True)
    assert load_model(good).arch == "siam-att"  # the file is sound before it is tampered with
    meta = json.loads(payload["meta"])
    for name, change, words in (("wide", {"model_kwargs": {"width": 1_000_000}}, "network it describes needs"),
                                ("knob", {"model_kwargs": {"members": 10_000}}, "unknown siam-att option"),
                                ("type", {"model_kwargs": [1, 2]}, "not an object")):
        bad = tmp_path / f"{name}.pt"
        torch.save({**payload, "meta": json.dumps({**meta, **change})}, bad)
        try:
            load_model(bad)
        except InputError as exc:
            text = str(exc)
            assert text.startswith(str(bad)) and words in text and "\n" not in text, text
        else:
            raise AssertionError(f"{name}: a tampered model loaded")


def test_declared_network_larger_than_its_weights_is_not_built(tmp_path):
    """Metadata declaring a network of a few GiB (under the memory limit) with the small network's weights: refused
    by comparing the weights with the network on torch's meta device, so the declared network's memory is never
    allocated (peak memory of a fresh process well under the declared size; building it would touch all of it)."""
    import json

    import torch

    from minescape.change.deep.model import build_model
    from minescape.limits import MAX_ALLOC_BYTES
    from tests.change.deep.conftest import saved_model

    good = tmp_path / "good.pt"
    saved_model(good, ("B02", "B03", "B04"), arch="siam-att")
    payload = torch.load(good, weights_only=True)
    meta = json.loads(payload["meta"])
    width, size = 16, 0.0
    while size < 2 * 2**30:  # the narrowest width whose float32 weights reach 2 GiB
        width *= 2
        with torch.device("meta"):
            size = 4.0 * sum(p.numel() for p in build_model("siam-att", 3, width=width).parameters())
    if size > MAX_ALLOC_BYTES:
        pytest.skip(f"this machine's limit ({MAX_ALLOC_BYTES / 2**30:.1f} GiB) is below the declared network")
    bad = tmp_path / "declared-big.pt"
    torch.save({**payload, "meta": json.dumps({**meta, "model_kwargs": {"width": width}})}, bad)
    code = ("import resource\nfrom minescape.change.deep.model import load_model\nfrom minescape.errors import "
            f"InputError\ntry:\n    load_model({str(bad)!r})\nexcept InputError as exc:\n    print(exc)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    message, peak = proc.stdout.strip().splitlines()
    assert message.startswith(str(bad)) and "weights do not fit the siam-att network it describes" in message
    assert int(peak) < size / 2, (int(peak) / 2**30, size / 2**30)


def _without_onnx(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``import onnx`` fails (as when it is not installed)."""
    launcher = "import sys; sys.modules['onnx'] = None\n" + code
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_export_without_onnx_is_one_line(tiny_model, tmp_path):
    proc = _without_onnx("from minescape.cli.app import main\nsys.argv = ['minescape', 'change', 'export', "
                         f"{str(tiny_model.model_path)!r}]\nmain()", tmp_path)
    assert proc.returncode == 2, proc.stderr
    out = (proc.stdout + proc.stderr).strip()
    assert len(out.splitlines()) == 1 and "optional package 'onnx' is not installed" in out, out
    assert not tiny_model.model_path.with_suffix(".onnx").exists()


def test_demo_stage_without_onnx_skips_the_export(small_region, tmp_path):
    code = (
        "from pathlib import Path\nfrom rich.console import Console\nfrom minescape.demo import DemoContext\n"
        "from minescape.synthetic import load_region_files\nfrom minescape.change.deep import demo\n"
        f"region = load_region_files(Path({str(small_region.root)!r}))\n"
        f"ctx = DemoContext(region=region, out=Path({str(tmp_path)!r}), seed=42, console=Console(quiet=True))\n"
        "print('\\n'.join(demo.run(ctx)))\n")
    proc = _without_onnx(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ONNX export skipped" in proc.stdout and "F1 of change" in proc.stdout, proc.stdout
    assert (tmp_path / "change_deep" / "change_mask.tif").exists()
    assert not (tmp_path / "change_deep" / "model" / "model.onnx").exists()
