"""The quality benchmark chooses on validation and shows no ablation's test numbers."""

from benchmarks.quality import (
    NOT_SHOWN,
    REFERENCE,
    chosen,
    curve_points,
    markdown,
    mean_cell,
    recipe_row,
    row_params,
    summary,
    with_run,
)


def run(seed, val, test, ci_low):
    return {
        "seed": seed, "wall_s": 100.0, "finetuned_val_accuracy": val, "finetuned_accuracy": test,
        "baseline_accuracy": 0.8, "classical_accuracy": 0.85, "gain_over_classical_ci_low": ci_low,
    }  # fmt: skip


def row(*runs):
    return {"runs": list(runs), **summary(list(runs))}


def test_the_best_row_is_the_best_on_validation_whatever_its_test_numbers():
    table = {
        "course": row(run(0, 0.90, 0.95, 0.01), run(1, 0.90, 0.95, 0.02)),
        "recipe:fashion": row(run(0, 0.93, 0.91, -0.01), run(1, 0.93, 0.91, 0.01)),
    }
    assert chosen(table) == "recipe:fashion"
    assert table["course"]["finetuned_accuracy"] == 0.95
    assert table["course"]["finetuned_accuracy_std"] == 0.0


def test_an_ablation_row_shows_validation_only_and_runs_beyond_noise_are_counted():
    results = {"datasets": {"fashion-mnist-100": {
        "course": row(run(0, 0.80, 0.81, 0.01), run(1, 0.82, 0.83, -0.01)),
        "course+batchnorm": row(run(0, 0.85, 0.99, 0.05), run(1, 0.85, 0.99, 0.05)),
    }}}  # fmt: skip
    lines = markdown(results).splitlines()
    assert "best on validation: `course+batchnorm`" in lines[0]
    course = next(line for line in lines if line.startswith("| course |"))
    assert "| 2 | 0.810 ± 0.014" in course and "1 of 2 runs" in course
    ablation = next(line for line in lines if line.startswith("| **course+batchnorm**"))
    assert "0.850 ± 0.000" in ablation and "0.99" not in ablation
    assert ablation.count(NOT_SHOWN) == 5


def test_scratch_trains_every_layer_and_batchnorm_from_random_weights():
    params = row_params("scratch", "fashion-mnist-1000")
    assert params["model.weights"] == "none" and params["phase2.unfreeze_last"] == 1.0
    assert params["phase2.train_batchnorm"] is True
    assert row_params("course+batchnorm", "digits")["evaluate.tta_flip"] is False


def test_scratch_on_the_full_set_trains_for_the_course_recipes_time_not_its_epochs():
    assert "phase2.epochs" not in row_params("scratch", "fashion-mnist-1000")
    assert "phase2.epochs" not in row_params("course", "fashion-mnist-full")
    assert row_params("scratch", "fashion-mnist-full")["phase2.epochs"] == 4


def test_a_recipe_row_names_its_recipe_and_may_move_it_to_another_backbone():
    assert recipe_row("recipe:fashion-full") == ("fashion-full", "")
    assert recipe_row("recipe:fashion@efficientnetlite2") == ("fashion", "efficientnetlite2")
    assert recipe_row("course+lr-1e-3") is None and recipe_row("scratch") is None
    own = row_params("recipe:fashion", "fashion-mnist-1000")
    moved = row_params("recipe:fashion@efficientnetlite2", "fashion-mnist-1000")
    assert moved == own | {"model.backbone": "efficientnetlite2"}
    assert own["model.backbone"] != "efficientnetlite2"


def test_a_row_measured_in_two_sittings_keeps_its_seeds_and_a_changed_row_starts_again():
    params = row_params("recipe:fashion", "fashion-mnist-1000")
    first = with_run(None, params, run(0, 0.90, 0.91, 0.01))
    assert first["seeds"] == 1 and "| 1 | 0.900 |" in markdown(
        {"datasets": {"fashion-mnist-1000": {"recipe:fashion": first}}}
    )
    both = with_run(
        with_run(first, params, run(2, 0.94, 0.93, 0.02)), params, run(1, 0.92, 0.92, 0)
    )
    assert [r["seed"] for r in both["runs"]] == [0, 1, 2]
    assert both["finetuned_val_accuracy"] == 0.92 and both["finetuned_val_accuracy_std"] == 0.02
    again = with_run(both, params, run(1, 0.50, 0.50, -0.1))
    assert [r["finetuned_val_accuracy"] for r in again["runs"]] == [0.90, 0.50, 0.94]
    changed = with_run(both, params | {"phase2.epochs": 3}, run(0, 0.80, 0.80, 0))
    assert changed["seeds"] == 1 and changed["params"]["phase2.epochs"] == 3


def test_the_curve_takes_at_each_size_the_recipe_variant_best_on_validation():
    results = {"datasets": {
        "fashion-mnist-1000": {"recipe:fashion": row(run(0, 0.90, 0.89, 0.01))},
        "fashion-mnist-full": {
            "recipe:fashion-full": row(run(0, 0.915, 0.93, 0.01)),
            "recipe:fashion-full-10ep": row(run(0, 0.925, 0.92, 0.01)),
            "recipe:fashion@efficientnetlite2": row(run(0, 0.99, 0.99, 0.01)),
            "course": row(run(0, 0.80, 0.80, -0.1), run(1, 0.80, 0.80, -0.1)),
        },
    }}  # fmt: skip
    points = curve_points(results, "fashion")
    recipe = points["fashion recipe (best on validation)"]
    assert [(n, r["finetuned_val_accuracy"]) for n, r in recipe] == [(1000, 0.90), (6000, 0.925)]
    assert [n for n, _ in points["course recipe"]] == [6000]
    assert [r["seeds"] for _, r in points[REFERENCE]] == [1, 2]  # the row of the most seeds
    assert "from scratch" not in points


def test_the_tables_go_from_the_digits_to_fashion_mnist_by_size_whatever_the_json_order():
    one = {"recipe:fashion": row(run(0, 0.90, 0.89, 0.01))}
    results = {"datasets": {name: one for name in
                            ("fashion-mnist-full", "fashion-mnist-100", "digits")}}  # fmt: skip
    lines = markdown(results).splitlines()
    titles = [line.split("**")[1] for line in lines if line.startswith("**")]
    assert titles == ["digits", "fashion-mnist-100", "fashion-mnist-full"]


def test_a_cell_rounds_the_runs_own_numbers_once():
    """Seeds at 138/143, 143/143 and 142/143: a deviation of 0.018502, which the row's
    summary keeps as 0.0185; the cell shows 0.019, not that rounded again."""
    table = row(run(0, 138 / 143, 0.9, 0.0), run(1, 1.0, 0.9, 0.0), run(2, 142 / 143, 0.9, 0.0))
    assert table["finetuned_val_accuracy_std"] == 0.0185
    assert mean_cell(table, "finetuned_val_accuracy") == "0.986 ± 0.019"
    assert mean_cell(table, "gain_over_classical_tta") == "n/a"
