"""Serve a STAC catalogue on loopback with real servers: rustac's STAC API (``rustac serve``, in-memory backend)
for the items and :mod:`minescape.imagery.range_server` (HTTP range requests) for the COG assets.

Used by the tests, the benchmark and ``minescape demo --stac``; users can point it at the layout
:func:`minescape.synthetic_stac.write_stac_region` writes to try the whole HTTP path offline.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from minescape.atomic import atomic_write_text
from minescape.errors import InputError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, *, timeout_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status); InputError after ``timeout_s`` or if ``proc`` died."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise InputError(f"server for {url} exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise InputError(f"server for {url} did not answer within {timeout_s:.0f} s")


def rustac_executable() -> str:
    """Path of the ``rustac`` CLI (beside this Python, else on PATH); InputError when not installed."""
    here = Path(sys.executable).parent / "rustac"
    if here.exists():
        return str(here)
    found = shutil.which("rustac")
    if not found:
        raise InputError("the 'rustac' CLI is not installed (pip install rustac): it serves the loopback STAC API")
    return found


def start_asset_server(root: str | Path, *, port: int, log: str | Path | None = None,
                       fail_first: int = 0, delay_ms: float = 0.0) -> subprocess.Popen:
    """Start :mod:`minescape.imagery.range_server` on 127.0.0.1:``port`` serving ``root``."""
    cmd = [sys.executable, "-m", "minescape.imagery.range_server", "--root", str(root), "--port", str(port)]
    if log is not None:
        cmd += ["--log", str(log)]
    if fail_first:
        cmd += ["--fail-first", str(fail_first)]
    if delay_ms:
        cmd += ["--delay-ms", str(delay_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/", proc=proc)
    return proc


def start_stac_server(items: str | Path, *, port: int) -> subprocess.Popen:
    """Start ``rustac serve ITEMS`` (in-memory STAC API) on 127.0.0.1:``port``."""
    cmd = [rustac_executable(), "serve", str(items), "--addr", f"127.0.0.1:{port}", "--create-collections"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/", proc=proc)
    return proc


def served_items(items: str | Path, assets_root: str | Path, base_url: str, out: str | Path) -> Path:
    """Rewrite an ItemCollection's asset hrefs (local, relative to its file) to URLs under ``base_url``
    (``assets_root`` maps to ``base_url``); writes ``out``."""
    items = Path(items)
    root = Path(assets_root).resolve()
    data = json.loads(items.read_text())
    for feat in data["features"]:
        for asset in feat.get("assets", {}).values():
            href = asset["href"]
            path = (items.parent / href).resolve() if "://" not in href else None
            if path is not None and path.is_relative_to(root):
                asset["href"] = f"{base_url.rstrip('/')}/{path.relative_to(root).as_posix()}"
    return atomic_write_text(out, json.dumps(data))


@dataclass
class Loopback:
    """Running loopback servers; stop them with :meth:`stop` (or use as a context manager)."""

    stac_url: str
    assets_url: str
    asset_port: int
    stac_port: int
    assets_root: Path
    log: Path | None
    items: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def stop(self, which: str | None = None) -> None:
        """Kill the ``"assets"`` or ``"stac"`` server, or both (by their own process ids)."""
        for name, proc in list(self.procs.items()):
            if which in (None, name) and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def restart_assets(self, *, fail_first: int = 0) -> None:
        """Start the asset server again on the same port."""
        self.stop("assets")
        self.procs["assets"] = start_asset_server(self.assets_root, port=self.asset_port, log=self.log,
                                                  fail_first=fail_first)

    def restart(self) -> None:
        """Start both servers again on the same ports (a resumed run sees the same URLs)."""
        self.stop()
        self.procs["assets"] = start_asset_server(self.assets_root, port=self.asset_port, log=self.log)
        self.procs["stac"] = start_stac_server(self.items, port=self.stac_port)

    def __enter__(self) -> Loopback:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_catalogue(items: str | Path, assets_root: str | Path, workdir: str | Path, *,
                    log: str | Path | None = None, fail_first: int = 0, delay_ms: float = 0.0) -> Loopback:
    """Serve ``items`` (an ItemCollection with local hrefs under ``assets_root``) on loopback: the assets over
    HTTP range requests, the items through a STAC API whose hrefs point at the asset server."""
    workdir = Path(workdir)
    asset_port, stac_port = free_port(), free_port()
    assets_url = f"http://127.0.0.1:{asset_port}"
    served = served_items(items, assets_root, assets_url, workdir / f"served-{Path(items).parent.name}.json")
    procs = {"assets": start_asset_server(assets_root, port=asset_port, log=log, fail_first=fail_first,
                                          delay_ms=delay_ms)}
    try:
        procs["stac"] = start_stac_server(served, port=stac_port)
    except Exception:
        procs["assets"].kill()
        raise
    return Loopback(f"http://127.0.0.1:{stac_port}", assets_url, asset_port, stac_port, Path(assets_root),
                    Path(log) if log else None, served, procs)
