import matplotlib.pyplot as plt
import numpy as np
import pytest

from src.finetune.params import Phase
from src.finetune.report.plots import (
    learning_curves_figure,
    plot_learning_curves,
    reliability_figure,
)
from src.finetune.training.history import combined_history
from tests.support.training import frame

KEPT = {Phase.EXTRACT: 12, Phase.FINETUNE: 25}


@pytest.fixture
def history():
    both = combined_history(frame(1, 15), frame(16, 10))
    return both.assign(lr=[1e-3] * 15 + [1e-5] * 10)


def test_panels_span_epochs_1_to_25_with_the_fine_tuning_line_and_kept_epochs(history):
    figure = learning_curves_figure(history, KEPT, "CIFAR-10")
    accuracy, loss, rate = figure.axes[:3]
    for axis, metric, scale in ((accuracy, "accuracy", 100), (loss, "loss", 1)):
        lines = {line.get_label(): line for line in axis.get_lines()}
        validation = lines[f"validation {metric}"]
        assert list(validation.get_xdata()) == list(range(1, 26))
        assert list(validation.get_ydata()) == (scale * history[f"val_{metric}"]).tolist()
        assert f"training {metric}" in lines
        marker = lines["fine-tuning starts (epoch 16)"]
        assert marker.get_linestyle() == "--"
        assert set(marker.get_xdata()) == {15.5}
        assert list(lines["kept by phase 1 (epoch 12)"].get_xdata()) == [12]
        assert list(lines["kept by phase 2 (epoch 25)"].get_xdata()) == [25]
    assert accuracy.get_ylabel() == "accuracy (%)"
    assert rate.get_yscale() == "log"
    assert list(rate.get_lines()[0].get_ydata()) == history["lr"].tolist()
    assert rate.get_xlabel() == "epoch" and accuracy.get_title() == "CIFAR-10"
    plt.close(figure)


def test_a_schedule_that_ends_at_zero_shows_its_last_epoch(history):
    """Cosine to the end logs 0 for the last epoch: on a log axis it would silently vanish."""
    history.loc[history["epoch"] == 25, "lr"] = 0.0
    figure = learning_curves_figure(history, KEPT, "CIFAR-10")
    rate = figure.axes[2]
    figure.canvas.draw()
    assert rate.get_yscale() == "symlog"
    bottom, top = rate.get_ylim()
    assert bottom == 0 and top >= 1e-3, "every rate, 0 included, lies inside the panel"
    assert tuple(rate.get_lines()[0].get_xydata()[-1]) == (25, 0.0)
    plt.close(figure)


def test_legends_sit_beside_the_panels_not_on_the_curves(history):
    figure = learning_curves_figure(history, KEPT, "CIFAR-10")
    figure.canvas.draw()
    for axis in figure.axes:
        legend = axis.get_legend().get_window_extent()
        panel = axis.get_window_extent()
        assert legend.x0 >= panel.x1, "the legend starts right of the plotting area"
    plt.close(figure)


def test_figure_is_written_as_png(history, tmp_path):
    path = tmp_path / "figures" / "validation_curves.png"
    plot_learning_curves(history, KEPT, "CIFAR-10", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reliability_shows_each_bins_images_and_keeps_sparse_bins_off_the_line():
    bins = 15
    confidence = (np.arange(bins) + 0.5) / bins
    count = np.zeros(bins, dtype=int)
    count[[3, 10, 14]] = (2, 40, 500)
    accuracy = np.where(count > 0, confidence, 0.0)
    figure = reliability_figure({"fine-tuned": (confidence, accuracy, count)}, {"fine-tuned": 0.01})
    curve, counts = figure.axes
    (line,) = [line for line in curve.get_lines() if line.get_label().startswith("fine-tuned")]
    assert list(line.get_xdata()) == pytest.approx(confidence[[10, 14]]), "2 images: off the line"
    (hollow,) = curve.collections
    np.testing.assert_allclose(hollow.get_offsets(), [[confidence[3], accuracy[3]]])
    assert [round(bar.get_height()) for bar in counts.patches] == count.tolist()
    assert counts.get_ylabel() == "test images"
