"""The training core: epochs, learning rates, unfreezing steps and early stopping."""

import math

import keras
import numpy as np
import pandas as pd
import pytest

from src.finetune.data.splits import Split
from src.finetune.errors import PipelineError
from src.finetune.model.network import base_of
from src.finetune.params import trained_part
from src.finetune.training.history import HISTORY_COLUMNS
from src.finetune.training.loop import (
    _fail_on_divergence,
    class_weights,
    phase_loss,
    unfreezing_steps,
)
from src.finetune.training.optimization import learning_rate
from tests.support.training import (
    BLOCK1,
    BLOCK2,
    TOP,
    augment,
    brief_train,
    fresh_model,
    tiny_plan,
    tiny_split,
)


class Watch(keras.callbacks.Callback):
    """Records, at every epoch's start, what trains; at every batch's start, the rate."""

    def __init__(self, network: keras.Model) -> None:
        super().__init__()
        self.network = network
        self.trainable: dict[int, set[str]] = {}
        self.rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        base = base_of(self.network).layers
        self.trainable[epoch + 1] = {layer.name for layer in base if layer.trainable}

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        if isinstance(optimizer, keras.optimizers.MultiOptimizer):
            optimizer = optimizer.optimizers[0]
        self.rates.append(float(optimizer.learning_rate))


def test_train_continues_the_epoch_count_and_reports_each_epoch_live():
    seen = []
    logger = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append((epoch + 1, sorted(logs)))
    )
    history = brief_train(fresh_model(), callbacks=(logger,), epochs=2, initial_epoch=3)
    assert history.frame["epoch"].tolist() == [4, 5]
    assert list(history.frame.columns) == [*HISTORY_COLUMNS, "lr"]
    assert [epoch for epoch, _ in seen] == [4, 5]
    assert set(HISTORY_COLUMNS[1:]) | {"lr"} <= set(seen[0][1])
    assert history.kept_epoch == 5 and not history.stopped_early
    assert history.frame.drop(columns="epoch").map(math.isfinite).all().all()


@pytest.mark.parametrize("cache", [False, True])
def test_the_log_names_the_layers_that_train_as_the_report_does(cache, caplog):
    caplog.set_level("INFO")
    brief_train(fresh_model(), phase="phase2", unfreeze_last=7, cache=cache)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("phase2: ")]
    assert line.startswith(f"phase2: training {trained_part(7)}, ")
    assert "the last 7 layers of the base" in trained_part(7)


def test_non_finite_loss_stops_with_the_lr_to_lower():
    frame = pd.DataFrame({"epoch": [1, 2], "loss": [2.3, float("nan")]})
    with pytest.raises(PipelineError, match=r"not finite at epoch 2; lower phase1\.lr"):
        _fail_on_divergence(frame, "phase1.lr")
    _fail_on_divergence(frame.iloc[:1], "phase1.lr")


def test_label_smoothing_gives_the_loss_of_a_hand_computed_case():
    labels, probabilities = np.array([[0.0, 1.0, 0.0]]), np.array([[0.2, 0.7, 0.1]])
    # Smoothing 0.3 over 3 classes: the target (0, 1, 0) becomes (0.1, 0.8, 0.1).
    expected = -(0.1 * math.log(0.2) + 0.8 * math.log(0.7) + 0.1 * math.log(0.1))
    loss = phase_loss(tiny_plan(label_smoothing=0.3))(labels, probabilities)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    plain = -math.log(0.7)
    assert float(phase_loss(tiny_plan())(labels, probabilities)) == pytest.approx(plain, rel=1e-5)


def test_training_uses_the_smoothed_loss():
    model = fresh_model()
    brief_train(model, label_smoothing=0.2)
    assert model.loss.get_config()["label_smoothing"] == 0.2


def test_the_rate_follows_warm_up_then_cosine_at_every_training_step():
    model, steps_per_epoch = fresh_model(), 2  # 20 images in batches of 10
    watch = Watch(model)
    history = brief_train(
        model, callbacks=(watch,), epochs=4, schedule="cosine", warmup_epochs=1, lr=0.01
    )
    total, warmup = 4 * steps_per_epoch, steps_per_epoch
    expected = [
        0.01 * step / warmup
        if step < warmup
        else 0.005 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        for step in range(total)
    ]
    np.testing.assert_allclose(watch.rates, expected, rtol=1e-5, atol=1e-9)
    schedule = learning_rate(0.01, "cosine", warmup, total)
    assert history.frame["lr"].tolist() == pytest.approx(
        [float(schedule(steps_per_epoch * e)) for e in (1, 2, 3, 4)], abs=1e-9
    )


def test_constant_rate_with_warm_up_holds_the_peak_after_it():
    schedule = learning_rate(0.01, "constant", warmup_steps=4, total_steps=10)
    assert [round(float(schedule(s)), 6) for s in range(0, 10, 2)] == [0, 0.005, 0.01, 0.01, 0.01]
    assert learning_rate(0.01, "constant", 0, 10) == 0.01


def test_unfreezing_steps_add_a_group_every_n_epochs_until_the_phase_ends():
    plan = tiny_plan(initial_epoch=15, epochs=10, unfreeze_every=3)
    assert [(s.first, s.end, s.groups) for s in unfreezing_steps(plan, 3)] == [
        (15, 18, 1),
        (18, 21, 2),
        (21, 25, 3),
    ]
    late = tiny_plan(initial_epoch=15, epochs=4, unfreeze_every=3)
    assert [(s.first, s.end, s.groups) for s in unfreezing_steps(late, 3)] == [
        (15, 18, 1),
        (18, 19, 2),
    ]
    assert len(unfreezing_steps(tiny_plan(epochs=10), 3)) == 1


def test_gradual_unfreezing_grows_the_trainable_set_on_schedule():
    model = fresh_model()
    watch = Watch(model)
    history = brief_train(
        model,
        callbacks=(watch,),
        phase="phase2",
        initial_epoch=3,
        epochs=3,
        unfreeze_last=TOP + BLOCK2 + BLOCK1,
        unfreeze_every=1,
        cache=True,
        cache_budget_gb=1.0,
    )
    assert history.frame["epoch"].tolist() == [4, 5, 6]
    grown = [watch.trainable[epoch] for epoch in (4, 5, 6)]
    assert all(name.startswith(("block3", "top_")) for name in grown[0])
    assert grown[0] < grown[1] < grown[2]
    assert {name[:6] for name in grown[1] - grown[0]} == {"block2"}
    assert {name[:6] for name in grown[2] - grown[1]} == {"block1"}
    assert not any("_bn" in name for name in grown[2]), "BatchNormalization stays frozen"
    assert [(g.name, g.first_epoch) for g in history.groups] == [
        ("block3", 4),
        ("block2", 5),
        ("block1", 6),
    ]


def test_gradual_unfreezing_on_the_cache_matches_streaming():
    """One cut below the whole unfrozen range serves every step: same numbers as streaming."""
    splits = (tiny_split(n=40), tiny_split(n=20, seed=1))
    plan = {
        "phase": "phase2",
        "epochs": 2,
        "unfreeze_last": TOP + 4,  # block2 from its projection up: its residual input cached
        "unfreeze_every": 1,
        "lr_decay": 0.5,
        "cache_budget_gb": 1.0,
    }
    streamed = brief_train(fresh_model(), splits, cache=False, **plan)
    cached = brief_train(fresh_model(), splits, cache=True, **plan)
    assert "cached outputs" in cached.inputs and "streaming" in streamed.inputs
    np.testing.assert_allclose(cached.frame["loss"], streamed.frame["loss"], rtol=1e-3)
    np.testing.assert_allclose(cached.frame["val_loss"], streamed.frame["val_loss"], rtol=1e-3)


class Snapshots(keras.callbacks.Callback):
    def __init__(self, network: keras.Model) -> None:
        super().__init__()
        self.network, self.weights = network, {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [w.copy() for w in self.network.get_weights()]


def test_early_stopping_stops_keeps_every_epoch_run_and_restores_the_best():
    """Validation labels are shifted by one class: the better the model fits the training
    labels, the worse its validation loss, so the first epoch is the best."""
    images = tiny_split(n=40)
    shifted = type(images)(images.images, (images.labels + 1) % 10, 10)
    model = fresh_model()
    snapshots = Snapshots(model)
    history = brief_train(
        model, (images, shifted), callbacks=(snapshots,), epochs=6, lr=0.01, early_stopping=2
    )
    assert history.stopped_early
    assert history.frame["epoch"].tolist() == [1, 2, 3]
    assert history.frame["val_loss"].is_monotonic_increasing
    assert history.kept_epoch == 1
    for ours, kept in zip(model.get_weights(), snapshots.weights[1], strict=True):
        np.testing.assert_array_equal(ours, kept)


def test_balanced_class_weights_make_each_class_count_alike():
    labels = np.array([0] * 8 + [1] * 2)
    split = Split(np.zeros((10, 32, 32, 3), np.uint8), labels, 2)
    assert class_weights(split, "none") is None
    assert class_weights(split, "balanced") == {0: 10 / (2 * 8), 1: 10 / (2 * 2)}
    blended = Split(split.images, np.eye(2)[labels] * 0.7 + 0.15, 2)  # MixUp-like rows
    assert class_weights(blended, "balanced") == class_weights(split, "balanced")


@pytest.mark.parametrize("cache", [False, True])
def test_balanced_class_weights_change_the_training_loss(cache):
    """Streamed or on the cache: the same tiny, imbalanced run with and without weights."""
    images = tiny_split(20).images
    labels = np.array([0] * 16 + [1] * 2 + [2] * 2)
    splits = (Split(images, labels, 10), tiny_split(seed=1))
    plain, weighted = fresh_model(), fresh_model()
    brief_train(plain, splits, cache=cache, cache_budget_gb=1.0)
    brief_train(weighted, splits, cache=cache, cache_budget_gb=1.0, class_weight="balanced")
    again = fresh_model()
    brief_train(again, splits, cache=cache, cache_budget_gb=1.0)
    head = [m.get_layer("probs").get_weights()[0] for m in (plain, weighted, again)]
    np.testing.assert_array_equal(head[0], head[2])  # deterministic: only the weights differ
    assert not np.allclose(head[0], head[1]), "the small classes' gradients were scaled up"


@pytest.mark.parametrize("cache", [False, True])
def test_ema_keeps_the_averaged_weights_at_the_end_of_the_phase(cache):
    """With a decay near 1 the average barely moves after the first step (Keras starts it
    there): twenty steps end much closer to the first weights than plain training does."""
    start = fresh_model().get_layer("probs").get_weights()[0]
    moved = {}
    for ema in (0.0, 0.9999):
        model = fresh_model()
        brief_train(model, epochs=10, lr=1e-2, ema=ema, cache=cache, cache_budget_gb=1.0)
        moved[ema] = np.abs(model.get_layer("probs").get_weights()[0] - start).mean()
    assert moved[0.9999] < moved[0.0] / 3


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"ema": 0.1}, "ema: 0.1 is not a moving-average decay"),
        ({"ema": 0.999, "early_stopping": 2}, "ema and early_stopping both choose"),
    ],
)
def test_ema_is_refused_in_one_line_where_it_cannot_work(settings, expected):
    with pytest.raises(ValueError, match=expected):
        tiny_plan(**settings)


def test_balanced_class_weights_train_with_mixup_labels():
    """MixUp blends the labels; Keras weighs each blended row by its largest class."""
    labels = np.array([0] * 16 + [1] * 2 + [2] * 2)
    splits = (Split(tiny_split(20).images, labels, 10), tiny_split(seed=1))
    history = brief_train(fresh_model(), splits, augment=augment(mixup=0.4),
                          class_weight="balanced")  # fmt: skip
    assert np.isfinite(history.frame["loss"]).all()
