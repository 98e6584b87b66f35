"""Every format's predictions run under one guard: a model file that opens but does not run
(damaged bytes in an int8 LiteRT or an ONNX file) is one line naming it, never a traceback
from inside the runtime."""

import json
import subprocess
import sys

import numpy as np
import pytest

from src.finetune.errors import PipelineError
from src.finetune.export.formats import Format
from src.finetune.export.runtimes import Runtime
from tests.support.params import ROOT

FUZZ = "tests.finetune.export.fuzz_runtime"


class Failing(Runtime):
    title = "LiteRT"
    input_shape, outputs = (16, 16, 3), 3

    def run(self, images):
        raise RuntimeError("XNNPACK delegate failed to prepare\nNode number 7 (CONV_2D)")


def test_a_runtime_error_while_running_is_one_line_naming_the_file(tmp_path):
    runtime = Failing()
    runtime.path = tmp_path / "model_int8.tflite"
    with pytest.raises(PipelineError) as caught:
        runtime.predict(np.zeros((1, 16, 16, 3), np.float32))
    assert str(caught.value) == (
        f"{runtime.path} opened but does not run in LiteRT (XNNPACK delegate failed to "
        "prepare); the file is damaged or not this pipeline's: export it again"
    )


@pytest.mark.parametrize("format", [Format.LITERT_INT8, Format.ONNX])
def test_mutants_of_an_export_run_or_are_refused_in_one_line(exported, tmp_path, format):
    """60 mutants of each file, a few random bytes changed, opened and run in a process of
    their own (a crashing runtime would take the test with it)."""
    source = exported / format.file_name
    (tmp_path / source.name).write_bytes(source.read_bytes())
    for sidecar in exported.glob(f"{source.stem}*.json"):
        (tmp_path / sidecar.name).write_bytes(sidecar.read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", FUZZ, str(source), "60", "7", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    outcomes = [json.loads(line)["outcome"] for line in lines]
    assert result.returncode == 0 and len(outcomes) == 60, result.stderr[-2000:]
    others = [o for o in outcomes if o not in ("ran", "refused")]
    assert others == [], others
    assert "refused" in outcomes, "some mutants must be damaged enough to be refused"
