"""Where and in what precision a network runs: the compute device ("auto": CUDA, then MPS, then the CPU) and the
autocast precision ("auto": bf16 on CUDA where supported, fp16 on MPS, bf16 on a CPU with native bf16, else fp32).

One module for the choice, used by the engine (which re-exports these names), the trainer, evaluation and the
GUIs' translation jobs.
"""

from __future__ import annotations

import torch

from .errors import DeviceUnavailableError, UnknownChoiceError

__all__ = ["PRECISIONS", "available_devices", "resolve_device", "resolve_precision", "cpu_has_native_bf16",
           "EMULATED_BF16_WARNING"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_PRECISION_ALIASES = {
    "auto": "auto",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
}
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device names a user can pick here: "auto", "cpu", then every CUDA device and Apple MPS when present."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def _cuda_index(local_rank: int | None) -> int:
    return torch.cuda.current_device() if local_rank is None else int(local_rank) % torch.cuda.device_count()


def resolve_device(device: str | torch.device = "auto", *, local_rank: int | None = None) -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a torch.device into a usable device.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU. ``local_rank`` (a distributed training process's rank on
    its node): ``"auto"`` and a bare ``"cuda"`` pick GPU ``local_rank % count``, and ``"auto"`` never picks MPS
    (torch.distributed has no MPS backend).

    Raises
    ------
    UnknownChoiceError
        For a name torch does not know.
    DeviceUnavailableError
        For a known device this machine does not have.
    """
    choices = ("auto", "cpu", "cuda", "cuda:N", "mps")
    if isinstance(device, torch.device):
        dev = device
    else:
        name = str(device).strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", _cuda_index(local_rank))
            if local_rank is None and _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError):
            raise UnknownChoiceError("device", str(device), choices) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {str(device)!r} was asked for, but CUDA is not available here; use 'cpu' or 'auto'")
        index = dev.index if dev.index is not None else _cuda_index(local_rank)
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {str(device)!r} was asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceUnavailableError(f"device {str(device)!r} was asked for, but Apple MPS is not available here")
        return dev
    if dev.type == "cpu":
        return torch.device("cpu")
    raise UnknownChoiceError("device", str(device), choices)


#: What the trainers warn when bf16 is asked for on a CPU without it in hardware (measured on this project's AVX2
#: machine: an MRNet step 1.5 s in bf16 against 0.13 s in fp32; a HiFi-Syn step over 13 s against 1.8 s).
EMULATED_BF16_WARNING = ("bf16 autocast on this CPU is emulated in software (no AVX512-BF16 or AMX): a training step "
                         "can take ten times as long as in fp32. --amp auto trains in fp32 here.")


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where oneDNN runs bf16 convolutions
    about 2-3x faster than fp32; without it bf16 is emulated and slower, so "auto" stays fp32."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # a torch build without the probe
            continue
    return False


def resolve_precision(precision: str, device: torch.device, *, cpu_bf16: bool = True) -> str:
    """``"auto"`` -> bf16 on CUDA when supported else fp16; fp16 on MPS; on the CPU bf16 where the CPU computes
    bf16 in hardware (:func:`cpu_has_native_bf16`), else fp32. Others pass through.

    bf16 autocast keeps the weights and the accumulation in fp32 and rounds activations to 8 significant bits; on
    the shipped demo model the output moves by 0.45 % of its peak on average (7 % at the worst voxel) on
    ``bench/engine.py``'s volume, and its test metrics by 0.01 dB (``medtrans evaluate --precision`` compares).
    ``"fp32"`` is always there for a bit-for-bit comparison with a plain PyTorch loop. ``cpu_bf16=False`` keeps "auto" at fp32 on every CPU
    (the segmenter's choice: SAM2's bf16 path on the CPU is not measured).

    Raises
    ------
    UnknownChoiceError
        For anything but "auto", "fp32", "bf16", "fp16" (or their long names).
    """
    key = _PRECISION_ALIASES.get(str(precision).strip().lower())
    if key is None:
        raise UnknownChoiceError("precision", str(precision), PRECISIONS)
    if key != "auto":
        return key
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    return "bf16" if cpu_bf16 and cpu_has_native_bf16() else "fp32"


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])
