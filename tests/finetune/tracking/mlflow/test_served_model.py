"""The served model stands alone (MLflow copies its file into every logged model), so it keeps
its own copy of the TensorFlow start-up notices the stages filter: the two must agree."""

from src.finetune.entrypoint import STARTUP_NOTICES
from src.finetune.tracking.mlflow.served_model import NOTICES

LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796579541.801508   22812 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1.2   1 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "E0000 00:00:1.2   1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
    "I0000 00:00:1.2   1 port.cc:153] oneDNN custom operations are on.",
    "E0000 00:00:1.2   1 cuda_executor.cc:1309] could not open kernel driver",
    "E0000 a real error from C++",
    "Traceback (most recent call last):",
)


def test_the_served_models_notices_are_the_stages_notices():
    filtered = [line for line in LINES if STARTUP_NOTICES.search(line)]
    assert len(filtered) == 7  # every notice above, neither real line
    assert [line for line in LINES if NOTICES.search(line)] == filtered
