"""Timing shared by the benchmarks: windows of repeated steps, sides interleaved round by round."""
from __future__ import annotations

import time

import torch

WARMUP = 2  # untimed steps per side before the rounds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def window(step, seconds: float, device: torch.device) -> float:
    """Seconds per step over a window of about ``seconds`` (at least one step)."""
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        step()
        n += 1
        if time.perf_counter() - start >= seconds:
            break
    sync(device)
    return (time.perf_counter() - start) / n


def interleaved(sides: dict, seconds: float, rounds: int, device: torch.device,
                warmup: int = WARMUP) -> dict[str, list[float]]:
    """Per-round seconds per step of every side; the order of the sides is reversed every other round, so
    that neither side always runs first (caches, clocks)."""
    for step in sides.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in sides}
    order = list(sides)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else reversed(order)):
            times[name].append(window(sides[name], seconds, device))
    return times
