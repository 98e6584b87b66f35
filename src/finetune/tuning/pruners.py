"""The pruners tune.yaml names, built the same way by the tuner and by the training stage
that asks them (Optuna keeps a study's pruner in the process, not in its storage)."""

from __future__ import annotations

import optuna


def make_pruner(name: str, trials: int, prune_after: int = 0) -> optuna.pruners.BasePruner:
    """``median``: a trial whose metric at an epoch trails the median of the earlier trials'
    at that epoch stops, once a quarter of ``trials`` (at most 5, Optuna's default) have
    finished; ``successive_halving``: a quarter of the trials go on at each rung, the first
    rung after one epoch; ``none``: every trial runs to its last epoch (it still reports).
    Neither stops a trial within its first ``prune_after`` epochs."""
    if name == "median":
        startup = max(1, min(5, trials // 4))
        # Optuna prunes at a step no lower than n_warmup_steps; steps here count epochs from 1
        warmup = prune_after + 1 if prune_after else 0
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, prune_after + 1), reduction_factor=4
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}")
