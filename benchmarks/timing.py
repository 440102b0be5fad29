"""Timing shared by the benchmarks: windows of repeated steps, sides interleaved round by round, per-round
ratios against a baseline timed in the same rounds, and the min / median / max that every table prints.

A ratio is taken within a round (both sides timed seconds apart) and summarized over rounds, because the
noise of a shared machine drifts over seconds: a ratio of two medians taken minutes apart would carry that
drift, a per-round ratio cancels it, and its min / median / max shows how noisy it still is.
"""
from __future__ import annotations

import statistics
import time

import torch

WARMUP = 2  # untimed steps per side before the rounds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def window(step, seconds: float, device: torch.device) -> float:
    """Seconds per step over a window of about ``seconds`` (at least one step: ``seconds=0`` times one call)."""
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
    that neither side always runs first (caches, clocks). ``seconds=0, warmup=0`` times one call per side and
    round: for steps that take seconds themselves (a whole evaluation, a set of jobs)."""
    for step in sides.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in sides}
    order = list(sides)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else reversed(order)):
            times[name].append(window(sides[name], seconds, device))
    return times


def per_round(numerator: list[float], denominator: list[float]) -> list[float]:
    """The ratio of two sides round by round (both lists from one ``interleaved`` call, or rounds timed the same
    way): e.g. ``per_round(times["plain"], times["ours"])`` is ours' speed over plain's in every round."""
    if len(numerator) != len(denominator):
        raise ValueError(f"per_round: {len(numerator)} rounds against {len(denominator)}; time both sides in the "
                         "same rounds")
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of the per-round ratio (not the ratio of the medians: see the module's note)."""
    return statistics.median(per_round(numerator, denominator))


def min_median_max(values: list[float], spec: str = ".2f", unit: str = "", sep: str = " / ") -> str:
    """``min / median / max`` of ``values``, each formatted with ``spec`` and followed by ``unit``: seconds as
    ``min_median_max(seconds)``, ratios as ``min_median_max(ratios, "5.2f", "x")``."""
    return sep.join(f"{v:{spec}}{unit}" for v in (min(values), statistics.median(values), max(values)))
