import matplotlib.pyplot as plt
import pytest

from src.finetune.history import combined_history
from src.finetune.plots import learning_curves_figure, plot_learning_curves
from tests.test_history import frame


@pytest.fixture
def history():
    return combined_history(frame(1, 15), frame(16, 10))


def test_both_panels_span_epochs_1_to_25_with_the_fine_tuning_line(history):
    figure = learning_curves_figure(history)
    top, bottom = figure.axes
    for axis, metric in ((top, "accuracy"), (bottom, "loss")):
        lines = {line.get_label(): line for line in axis.get_lines()}
        validation = lines[f"validation {metric}"]
        assert list(validation.get_xdata()) == list(range(1, 26))
        assert list(validation.get_ydata()) == history[f"val_{metric}"].tolist()
        assert f"training {metric}" in lines
        marker = lines["fine-tuning starts (epoch 16)"]
        assert marker.get_linestyle() == "--"
        assert set(marker.get_xdata()) == {15.5}
    assert bottom.get_xlabel() == "epoch"
    plt.close(figure)


def test_figure_is_written_as_png(history, tmp_path):
    path = tmp_path / "figures" / "validation_curves.png"
    plot_learning_curves(history, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
