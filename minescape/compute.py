"""Where and how deep change networks compute: device, precision and threads, decided in one place.

* device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu`` or ``cuda`` (refused with one line when
  there is no GPU);
* precision: ``fp32``, ``bf16`` (autocast: matrix products and convolutions in bfloat16, accumulations and the
  output in float32) or ``auto`` (bf16 on CUDA; on CPUs with native bf16 instructions, AVX512-BF16 or AMX, bf16
  where it was measured to pay, :data:`CPU_AUTO_BF16`; fp32 elsewhere). ``bf16`` asked for on a CPU without them
  falls back to fp32 and says so in ``note``;
* threads: the cores a run uses; default every core this process may use (``os.sched_getaffinity``,
  :func:`minescape.threads.resolve_threads`); 0 or more than those cores is refused with one line. Training
  and GPU work use them as torch's intra-op threads. Prediction on a CPU runs that many tiles at once, each in
  one thread (``tiles_at_once``; torch's intra-op threads set to 1): a convolution split over 2 threads sums in
  another order than over 1 (an FC-EF tile differed by up to 1.2e-7), so this way a tile's values, and the
  output bytes, are the same for any thread count and any load, and 2 tiles on 2 cores ran ~10 % faster than
  one tile on 2 threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from minescape.errors import ConfigError, check_choice

DeviceName = Literal["auto", "cpu", "cuda"]
PrecisionName = Literal["fp32", "bf16", "auto"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")
WORKLOADS: tuple[str, ...] = ("predict", "change-training", "map-training")

# Whether ``auto`` picks bf16 on a CPU with native bf16, per workload. Prediction: within the F1 goal of fp32,
# 2.3x faster (docs/deep-change.md). Change training: x1.5 the steps in the same minutes, mean validation F1
# 0.400-0.412 over three seeds against 0.384 in fp32 (leave-one-city-out pooled F1 0.482 / 0.493 / 0.288 against
# 0.432; experiments/oscd_cpu_loo10_bf16*). Map training (the low-to-high U-Net) was not measured in bf16 on a
# CPU, so it stays fp32.
CPU_AUTO_BF16: dict[str, bool] = {"predict": True, "change-training": True, "map-training": False}


@dataclass(frozen=True)
class Compute:
    """A resolved choice: ``device`` is ``cpu`` or ``cuda``, ``precision`` is ``fp32`` or ``bf16``."""

    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 1
    note: str = ""
    tiles_at_once: int = 1  # tiles a prediction engine runs concurrently, each in op_threads threads

    @property
    def op_threads(self) -> int:
        """Intra-op threads of one network call (torch's, onnxruntime's): 1 where tiles run at once."""
        return max(1, self.threads // self.tiles_at_once)

    @property
    def bf16(self) -> bool:
        """Whether the network runs in bfloat16 autocast."""
        return self.precision == "bf16"

    def describe(self) -> str:
        """One phrase for the CLI's output, e.g. ``cpu, bf16, 2 threads``."""
        per_tile = ", a tile each" if self.tiles_at_once > 1 else ""
        return f"{self.device}, {self.precision}, {self.threads} thread{'s' if self.threads != 1 else ''}" \
            f"{per_tile}" + (f" ({self.note})" if self.note else "")

    @contextmanager
    def torch_scope(self, *, deterministic: bool = False) -> Iterator[None]:
        """Torch's process-wide settings for one run, put back as they were when it ends (a notebook or a Dask
        worker keeps using torch afterwards): intra-op threads set to :attr:`op_threads` (threads a prediction
        engine starts inside take that count: 1 where tiles run at once), deterministic algorithms on when
        ``deterministic`` (training), and the global random generators forked (``torch.manual_seed`` inside does
        not move the caller's stream)."""
        import torch

        threads = torch.get_num_threads()
        det, warn_only = torch.are_deterministic_algorithms_enabled(), \
            torch.is_deterministic_algorithms_warn_only_enabled()
        devices = [torch.cuda.current_device()] if self.device == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.set_num_threads(self.op_threads)
            if deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                yield
            finally:
                torch.set_num_threads(threads)
                torch.use_deterministic_algorithms(det, warn_only=warn_only)

    def autocast(self):
        """A context manager running the enclosed forward passes in this precision."""
        if not self.bf16:
            return nullcontext()
        import torch

        return torch.autocast(device_type=self.device, dtype=torch.bfloat16)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), as oneDNN reports or /proc/cpuinfo."""
    import torch

    try:
        if bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return True
    except (AttributeError, RuntimeError):
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_compute(device: str = "auto", precision: str = "auto", threads: int | None = None, *,
                    workload: str = "predict") -> Compute:
    """Check and resolve the user's choices (nothing in torch is changed: the engines hold their thread count
    in :meth:`Compute.torch_scope` while they run; 1 intra-op thread for prediction on a CPU, which runs
    ``threads`` tiles at once instead).

    Args:
        device: :data:`DEVICES`.
        precision: :data:`PRECISIONS`.
        threads: cores to use (default: every usable core): intra-op threads, or for prediction on a CPU tiles
            at once (whose results do not depend on the count; training's weights do).
        workload: :data:`WORKLOADS`. It decides ``auto`` on a bf16 CPU (:data:`CPU_AUTO_BF16`) and whether a CPU
            runs tiles at once (prediction) or one network call on every thread (training).

    Raises:
        ConfigError: an unknown choice, ``cuda`` without a GPU, or a bad thread count (one line).
    """
    check_choice(device, DEVICES, what="device")
    check_choice(precision, PRECISIONS, what="precision")
    check_choice(workload, WORKLOADS, what="workload")
    from minescape.threads import resolve_threads

    n = resolve_threads(threads)
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ConfigError("--device cuda: torch sees no CUDA GPU on this machine (use --device cpu or auto)")
    dev = "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"
    note = ""
    if dev == "cuda":
        prec = "fp32" if precision == "fp32" else "bf16"
    else:
        native = cpu_has_bf16()
        if precision == "bf16" and not native:
            prec = "fp32"
            note = "this CPU has no native bf16 (AVX512-BF16/AMX): fp32 instead"
        elif precision == "auto":
            prec = "bf16" if native and CPU_AUTO_BF16[workload] else "fp32"
        else:
            prec = precision
    tiles_at_once = n if dev == "cpu" and workload == "predict" else 1
    return Compute(device=dev, precision=prec, threads=n, note=note, tiles_at_once=tiles_at_once)
