"""Peak memory of streamed training at image_size 224 with the full 60,000 images loaded.

    make bench-memory     # python -m benchmarks.memory [--steps 20]

Generates a full-size archive (50,000 training + 10,000 test images), prepares it with the
pipeline's own code, then in one process does what the training stages do at
`data.image_size: 224`: loads the splits, builds the model, and trains the top 40 layers
(phase 2, the heavier phase) through `model.fit` on the streaming `tf.data` pipeline, which
resizes each batch inside the model. On a 2-core CPU a full epoch at 224 takes hours, so it
runs `--steps` batches: nothing accumulates from one step to the next, so the peak is
reached within the first steps. Phase 1's cached pooled features for the same images are
computed from their shape (1,280 float32 numbers per image). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
from pathlib import Path

import numpy as np

from src.finetune.batches import batches
from src.finetune.data import load_split, read_archive, save_splits, split_validation
from src.finetune.model import build_model, unfreeze_top
from src.finetune.sample import write_archive


def prepare(out: Path) -> None:
    """A full-size generated archive, split like the prepare stage does."""
    write_archive(out / "full.tar.gz", 50_000, 10_000, seed=3)
    cifar = read_archive(out / "full.tar.gz")
    train, val = split_validation(cifar.train, 0.1, np.random.default_rng(0))
    save_splits(out, {"train": train, "val": val, "test": cifar.test}, cifar.class_names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training batches to run")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="finetune-memory-"))
    # Generating and preparing the archive happens in another process: this one measures
    # training only, as a training stage would run.
    preparing = multiprocessing.get_context("spawn").Process(target=prepare, args=(scratch,))
    preparing.start()
    preparing.join()
    train, val = load_split(scratch, "train"), load_split(scratch, "val")
    after_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    model = build_model(weights=None, dropout=0.3, image_size=224)
    unfreeze_top(model, 40)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(
        batches(train, args.batch_size, shuffle_seed=0),
        steps_per_epoch=args.steps,
        epochs=1,
        verbose=2,
    )
    model.predict(batches(val, args.batch_size).take(args.steps), verbose=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "images_in_memory": len(train) + len(val) + 10_000,
                "image_size": 224,
                "batch_size": args.batch_size,
                "training_steps": args.steps,
                "peak_rss_after_loading_mb": round(after_data / 1024),
                "peak_rss_mb": round(peak / 1024),
                "phase1_feature_cache_mb": round((len(train) + len(val)) * 1280 * 4 / 2**20),
                "float32_copy_of_the_data_at_224_would_be_mb": round(
                    60_000 * 224 * 224 * 3 * 4 / 2**20
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
