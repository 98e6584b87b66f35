"""Optimizers, weight decay and discriminative learning rates, and how Keras's MultiOptimizer
serialises, saves and resumes."""

import keras
import numpy as np
import pytest

from src.finetune.model.network import set_trainable, training_groups
from src.finetune.training.optimization import current_rate, group_rates, make_optimizer, route
from tests.support.training import BLOCK1, BLOCK2, TOP, fresh_model


def small_network() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_weight_decay_shrinks_kernels_and_leaves_biases_and_batchnorm_alone(kind):
    network = small_network()
    variables = network.trainable_variables
    before = {v.path: v.numpy().copy() for v in variables}
    optimizer = make_optimizer(kind, 0.1, weight_decay=0.5, variables=variables)
    # Zero gradients: whatever moves, moves by weight decay alone.
    optimizer.apply([np.zeros(v.shape, "float32") for v in variables], variables)
    for variable in variables:
        old = before[variable.path]
        if variable.path.endswith("kernel"):
            np.testing.assert_allclose(variable.numpy(), old * (1 - 0.1 * 0.5), rtol=1e-6)
        else:  # biases, BatchNormalization's gamma and beta
            np.testing.assert_array_equal(variable.numpy(), old)
    assert {v.path for v in variables} >= {"norm/gamma", "norm/beta", "dense/bias"}


def test_without_weight_decay_the_optimizer_is_the_recipe_one():
    variables = small_network().trainable_variables
    adam = make_optimizer("adam", 1e-3, 0.0, variables)
    assert type(adam) is keras.optimizers.Adam and adam.weight_decay is None
    sgd = make_optimizer("sgd", 1e-3, 0.0, variables)
    assert (sgd.momentum, sgd.nesterov) == (0.9, True)


def test_one_plain_sgd_step_moves_each_group_by_its_own_rate_times_its_gradient():
    model = fresh_model()
    groups = training_groups(model, TOP + BLOCK2 + BLOCK1)
    rates = group_rates(1e-2, 0.5, len(groups))
    assert rates == [1e-2, 5e-3, 2.5e-3]
    set_trainable(model, groups)
    variables = [[w for layer in g.layers for w in layer.trainable_weights] for g in groups]
    optimizer = route([keras.optimizers.SGD(rate) for rate in rates], variables)
    assert isinstance(optimizer, keras.optimizers.MultiOptimizer)
    flat = [v for group in variables for v in group]
    before = [v.numpy().copy() for v in flat]
    rng = np.random.default_rng(0)
    gradients = [rng.normal(size=v.shape).astype("float32") for v in flat]
    optimizer.apply(gradients, flat)
    index = 0
    for rate, group in zip(rates, variables, strict=True):
        assert group, "every group has variables"
        for variable in group:
            moved = variable.numpy() - before[index]
            # float32 weights near 1 round a step to about 1e-7
            np.testing.assert_allclose(moved, -rate * gradients[index], rtol=1e-4, atol=1e-6)
            index += 1
    assert current_rate(optimizer) == pytest.approx(1e-2)


def test_a_single_group_keeps_a_plain_optimizer():
    variables = small_network().trainable_variables
    adam = keras.optimizers.Adam(1e-3)
    assert route([adam], [variables]) is adam


def two_group_model() -> tuple[keras.Model, keras.optimizers.MultiOptimizer]:
    network = small_network()
    low = [v for v in network.trainable_variables if not v.path.startswith("out")]
    high = [v for v in network.trainable_variables if v.path.startswith("out")]
    optimizer = route([keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3)], [high, low])
    network.compile(optimizer=optimizer, loss="mse")
    return network, optimizer


def test_multi_optimizer_state_survives_save_weights_and_load_weights(tmp_path):
    network, optimizer = two_group_model()
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
    network.fit(x, y, epochs=2, batch_size=4, verbose=0)
    network.save_weights(tmp_path / "backup.weights.h5")
    copy, fresh = two_group_model()
    fresh.build(copy.trainable_variables)
    copy.load_weights(tmp_path / "backup.weights.h5")
    assert [int(o.iterations) for o in fresh.optimizers] == [4, 4]
    for ours, theirs in zip(fresh.variables, optimizer.variables, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_multi_optimizer_serialises_with_the_model(tmp_path):
    network, optimizer = two_group_model()
    network.fit(np.ones((4, 4), "float32"), np.zeros((4, 2), "float32"), verbose=0)
    network.save(tmp_path / "compiled.keras")
    loaded = keras.saving.load_model(tmp_path / "compiled.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, keras.optimizers.MultiOptimizer)
    assert [float(o.learning_rate) for o in loaded.optimizer.optimizers] == pytest.approx(
        [1e-2, 1e-3]
    )
    for ours, theirs in zip(loaded.optimizer.variables, optimizer.variables, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
