"""The learning-rate range test: rates grow, the loss is followed until it blows up, the
model keeps its weights, and the suggestion lies where the loss falls."""

import math

import numpy as np
import pytest

from src.finetune.training.rate_range import suggestions, sweep
from tests.support.training import fresh_model, learnable_split, tiny_plan, tiny_split


def test_suggestions_are_the_steepest_fall_and_the_lowest_point():
    rates = list(np.logspace(-6, 0, 61))
    # flat, then falling fastest around 1e-3, lowest at 1e-2, then rising
    logs = np.log10(rates)
    losses = list(2 - np.tanh(2 * (logs + 3)) + np.where(logs > -2, 3 * (logs + 2) ** 2, 0))
    steepest, minimum = suggestions(rates, losses)
    assert steepest == pytest.approx(1e-3, rel=0.3)
    assert minimum == pytest.approx(1e-2, rel=0.3)


def test_a_sweep_follows_the_loss_up_the_rates_and_leaves_the_weights_alone():
    model = fresh_model(dropout=0.0)
    before = [w.numpy().copy() for w in model.weights]
    plan = tiny_plan(cache=True, cache_budget_gb=1.0)
    result = sweep(model, learnable_split(), plan, 1e-5, 10.0, 60)
    assert len(result.rates) == len(result.losses) == len(result.raw_losses) >= 12
    assert all(a < b for a, b in zip(result.rates, result.rates[1:], strict=False))
    assert all(math.isfinite(loss) for loss in result.losses)
    assert result.rates[0] == pytest.approx(1e-5)
    assert result.rates[0] < result.suggested < result.minimum
    assert result.losses[result.rates.index(result.minimum)] < 0.9 * result.losses[0]
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(model.weights, before, strict=True))


def test_a_rate_that_blows_the_loss_up_ends_the_sweep_and_says_so():
    model = fresh_model(dropout=0.0)
    result = sweep(model, tiny_split(n=40), tiny_plan(cache=True, cache_budget_gb=1.0),
                   1e-3, 1e6, 60)  # fmt: skip
    assert len(result.rates) < 60
    assert result.stopped.startswith(("the loss rose to 4 times", "the loss was not finite"))
