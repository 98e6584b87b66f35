"""Run in a process of its own by test_runtimes.py: open and run mutants of a model file,
printing one JSON line per mutant: how it ended. A crash of the runtime ends the process,
which the test sees."""

import json
import sys
from pathlib import Path

import numpy as np

from src.finetune.errors import PipelineError
from src.finetune.export.runtimes import open_model

source, count, seed, folder = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = source.read_bytes()
rng = np.random.default_rng(seed)
images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
for number in range(count):
    mutant = bytearray(data)
    # every other mutant in the first 4 KB, where the graph is described, the rest anywhere
    reach = min(len(mutant), 4096) if number % 2 else len(mutant)
    for _ in range(int(rng.integers(1, 9))):
        mutant[int(rng.integers(0, reach))] = int(rng.integers(256))
    path = Path(folder) / f"mutant-{number}{source.suffix}"
    path.write_bytes(bytes(mutant))
    try:
        loaded = open_model(path)
        rows = loaded.runtime.predict(images)
        outcome = "ran" if rows.shape[0] == 4 else f"shape {rows.shape}"
    except PipelineError as error:
        outcome = "refused" if "\n" not in str(error) else f"two lines: {error}"
    except Exception as error:  # what the test is for: nothing but the one-line refusal
        outcome = f"{type(error).__name__}: {str(error)[:200]}"
    path.unlink()
    print(json.dumps({"mutant": number, "outcome": outcome}), flush=True)
