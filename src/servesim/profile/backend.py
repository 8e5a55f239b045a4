"""The seam between the profiling runner and the code that runs a decoder.

A ``StepBackend`` knows one framework on one device: it builds a ``Decoder``
of a catalog model's shape with random weights, and a decoder times rows.
Backends are chosen by name from ``BACKENDS``; ``select_backend`` resolves
``auto`` and imports a backend's framework only when it is chosen, so
servesim itself never needs PyTorch.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

from servesim.errors import ConfigError
from servesim.perf.model_spec import ModelSpec
from servesim.profile.rows import RowSpec

TORCH_MISSING = "servesim profile needs PyTorch: pip install 'servesim[profile]'"
# Reasons a row is skipped, counted by the runner and printed in the summary.
GRAPHS_NEED_CUDA = "graphed rows need CUDA graphs (torch on a CUDA device)"
OUT_OF_MEMORY = "ran out of memory"


class RowSkipped(Exception):
    """A decoder could not run a row; ``str(err)`` is the reason the runner counts."""


class Decoder(Protocol):
    """A decoder with weights in place, ready to time iterations."""

    def time_row_ms(self, row: RowSpec, warmup: int, repeats: int) -> list[float]:
        """Run ``row``'s iteration ``warmup`` times untimed, then ``repeats`` times timed.

        Returns one wall time per timed run, milliseconds.  Raises
        ``RowSkipped`` when the row cannot run here (e.g. out of memory).
        """
        ...

    def close(self) -> None:
        """Free the weights (the decoder is unusable afterwards)."""
        ...


class StepBackend(Protocol):
    """One framework on one device.

    name: ``torch`` | ``numpy``; device: ``cuda`` | ``cpu``.
    elem_bytes: bytes per weight and activation element (2 = bf16, 4 = float32).
    supports_graphs: can replay an iteration as a CUDA graph (``graphed`` rows).
    """

    name: str
    device: str
    elem_bytes: int
    supports_graphs: bool

    def device_name(self) -> str:
        """Human-readable device, e.g. ``NVIDIA H100 80GB HBM3``."""
        ...

    def free_memory_bytes(self) -> float:
        """Device memory free for weights and rows now, bytes."""
        ...

    def build(self, model: ModelSpec, num_layers: int, seed: int) -> Decoder:
        """A decoder of ``model``'s shape with ``num_layers`` layers of random weights."""
        ...

    def device_facts(self) -> dict[str, Any]:
        """Facts about the device and software, plus a measured GEMM rate and copy bandwidth."""
        ...


def check_profilable(model: ModelSpec) -> None:
    """``ConfigError`` unless ``model`` is a dense MHA/GQA decoder, the shape the backends build."""
    if model.attention == "mla":
        raise ConfigError(f"model {model.id!r}: profiling supports MHA/GQA attention, not MLA")
    if model.is_moe:
        raise ConfigError(f"model {model.id!r}: profiling supports dense models, not mixtures of experts")
    if model.head_dim % 2:  # type: ignore[operator]
        raise ConfigError(f"model {model.id!r}: head_dim must be even for rotary embedding, got {model.head_dim}")


BACKENDS = ("auto", "torch", "numpy")
DEVICES = ("auto", "cuda", "cpu")


def select_backend(name: str, device: str) -> StepBackend:
    """The backend for ``--backend name --device device``.

    ``auto`` picks torch when it can be imported, else numpy; torch's ``auto``
    device is CUDA when available, else CPU.  numpy runs on the CPU only.
    Raises ``ConfigError`` for unknown names, impossible pairs, or torch
    asked for but not installed.
    """
    if name not in BACKENDS:
        raise ConfigError(f"option --backend: unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ConfigError(f"option --device: unknown device {device!r}; known: {', '.join(DEVICES)}")
    if name == "auto":
        name = "torch" if _torch_installed() else "numpy"
    if name == "numpy":
        if device == "cuda":
            raise ConfigError("option --device cuda: the numpy backend runs on the CPU; use --backend torch")
        from servesim.profile.numpy_backend import NumpyBackend

        return NumpyBackend()
    from servesim.profile.torch_backend import TorchBackend

    return TorchBackend.open(device)


def _torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        # find_spec raises when sys.modules holds a None or spec-less entry.
        return False
