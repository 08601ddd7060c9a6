"""Network arithmetic: which precision and memory format a run uses, and the contexts that apply them.

* ``"auto"``: bfloat16 autocast on a CPU with native bfloat16 (oneDNN with AVX512-BF16, AMX-BF16
  or Arm BF16), float16 autocast on CUDA, float32 elsewhere (a CPU without native bfloat16, MPS).
  ``"float32"``, ``"bfloat16"`` and ``"float16"`` force a precision.
* On the CPU the network and its inputs are channels-last-3d whatever the precision (oneDNN's
  fastest layout for 3-D convolutions); elsewhere they stay contiguous.
* Only the network runs in reduced precision: callers cast its logits with ``.float()`` before the
  sigmoid, the fusion sums and the losses.

Example:
    >>> dtype = resolve_precision("auto", torch.device("cpu"))  # doctest: +SKIP
    >>> with model_memory_format(model, memory_format(device)), autocast(device, dtype):  # doctest: +SKIP
    ...     logits = model(as_memory_format(inputs, memory_format(device)))
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn

from napari_lesionseg.engine.devices import resolve_device
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import PRECISIONS

__all__ = [
    "as_memory_format",
    "autocast",
    "check_precision",
    "convert_model",
    "memory_format",
    "model_memory_format",
    "native_bfloat16",
    "precision_label",
    "precision_name",
    "resolve_precision",
    "restore_contiguous",
    "without_native_bfloat16",
]

_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: CPU features that make bfloat16 convolutions native rather than emulated (`torch.cpu.get_capabilities` keys).
_NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
_forced_off = 0  # depth of `without_native_bfloat16` blocks


def check_precision(precision: str) -> str:
    """`precision` if it is one of `PRECISIONS`, else a clear error."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def native_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively through oneDNN (False inside `without_native_bfloat16`)."""
    return not _forced_off and _cpu_has_native_bfloat16()


@contextlib.contextmanager
def without_native_bfloat16() -> Iterator[None]:
    """Act as if this CPU had no native bfloat16 (``"auto"`` then takes float32), e.g. in a test."""
    global _forced_off
    _forced_off += 1
    try:
        yield
    finally:
        _forced_off -= 1


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype the network runs in for `precision` on `device` (``"auto"``: see the module docstring)."""
    device = resolve_device(device) if isinstance(device, str) else device
    check_precision(precision)
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and native_bfloat16() else torch.float32
    dtype = _DTYPES[precision]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InvalidInputError(f"{device} does not support bfloat16; use --precision float16 or float32")
    return dtype


def precision_name(dtype: torch.dtype) -> str:
    """``"bfloat16"`` for ``torch.bfloat16``: the name results and reports use."""
    return str(dtype).removeprefix("torch.")


def precision_label(device: torch.device | str = "auto", precision: str = "auto") -> str:
    """What runs for `precision` on `device`, for a menu or a log: ``"bfloat16 (native)"``, ``"float32"``..."""
    resolved = resolve_device(device) if isinstance(device, str) else device
    dtype = resolve_precision(precision, resolved)
    name = precision_name(dtype)
    if dtype == torch.float32:
        return name
    if resolved.type == "cpu" and dtype == torch.bfloat16:
        return f"{name} ({'native' if native_bfloat16() else 'emulated'})"
    return f"{name} (autocast)"


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`; nothing for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_format(device: torch.device) -> torch.memory_format:
    """channels-last-3d on the CPU, contiguous elsewhere."""
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def as_memory_format(tensor: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """A 5-D `tensor` in `fmt` (a no-op when it already is); other tensors unchanged."""
    return tensor.contiguous(memory_format=fmt) if tensor.ndim == 5 else tensor


@contextlib.contextmanager
def model_memory_format(model: nn.Module, fmt: torch.memory_format) -> Iterator[nn.Module]:
    """`model`'s 5-D weights in `fmt` for the block; those that were contiguous are made contiguous again after."""
    was_contiguous = convert_model(model, fmt)
    try:
        yield model
    finally:
        restore_contiguous(was_contiguous)


def convert_model(model: nn.Module, fmt: torch.memory_format) -> list[torch.Tensor]:
    """Put `model`'s 5-D parameters and buffers in `fmt`; return those that were contiguous before."""
    was_contiguous = []
    with torch.no_grad():
        for tensor in _five_d_tensors(model):
            if tensor.is_contiguous():
                was_contiguous.append(tensor)
            tensor.data = tensor.data.contiguous(memory_format=fmt)
    return was_contiguous


def restore_contiguous(was_contiguous: list[torch.Tensor]) -> None:
    """Make the tensors `convert_model` returned contiguous again (in place: the same parameter objects)."""
    with torch.no_grad():
        for tensor in was_contiguous:
            tensor.data = tensor.data.contiguous()


def _five_d_tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.ndim == 5:
            yield tensor


@functools.lru_cache(maxsize=1)
def _cpu_has_native_bfloat16() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        # True on any AVX-512 CPU, where oneDNN may emulate bfloat16 (slower than float32): hence the feature check
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:  # torch before 2.6: x86 only
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    features = capabilities()
    return any(bool(features.get(name, False)) for name in _NATIVE_BF16_FEATURES)
