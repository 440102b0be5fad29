"""Device selection: asking for CUDA where there is none is an error, never a silent CPU run."""
from __future__ import annotations

import platform

import torch


class DeviceUnavailableError(RuntimeError):
    pass


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a ``torch.device``, checked to exist here."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {name!r}; use 'cpu', 'cuda' or 'cuda:N'") from err
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"unsupported device type {device.type!r}; use 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {name!r} was asked for but CUDA is not available on {platform.node()} "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); run on a GPU machine "
            f"or choose device 'cpu'"
        )
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"device {name!r} asked for but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def device_available(name: str) -> bool:
    """Whether device ``name`` exists here: the planner's check (``workflow/rules/common.smk``) is the job's."""
    try:
        resolve_device(name)
    except DeviceUnavailableError:
        return False
    return True
