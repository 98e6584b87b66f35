"""The MLflow UI of ``make ui`` (``src/ui.py``): the view of the comparison runs it opens
on, the experiment it opens, and the server it runs quietly, stopped with the tool."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.parse

from src.finetune import environment
from src.finetune.errors import PipelineError
from src.finetune.evaluation.metrics import HEADLINE, TTA_HEADLINE
from src.finetune.params import load_params
from src.finetune.tracking.mlflow.runs import COMPARISON_FILTER, experiment_id_for

VIEW = "pipeline-comparison"  # the shared view the link opens
# What the runs table shows of each execution: what it tried and how it did.
COLUMNS = [
    # accuracies, delta, the classical reference and the gain over it
    *(
        f"metrics.`{key}`"
        for key in (*HEADLINE[:3], "classical_accuracy", "gain_over_classical", *TTA_HEADLINE)
    ),
    *(
        f"params.`{key}`"
        for key in (
            "data.source", "model.backbone", "model.weights", "augment.flip", "phase1.lr",
            "phase2.lr", "phase2.unfreeze_last", "phase2.lr_decay", "phase2.unfreeze_every",
            "phase2.optimizer", "phase2.schedule", "evaluate.tta",
        )
    ),
]  # fmt: skip


def share_comparison_view(client, experiment_id: str) -> None:
    """Store the view as MLflow's "Share" button does: an experiment tag its UI reads."""
    state = {
        "searchFilter": COMPARISON_FILTER,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": COLUMNS,
    }
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW}", json.dumps(state))


def comparison_runs_link(base: str, experiment_id: str) -> str:
    query = urllib.parse.urlencode({"viewStateShareKey": VIEW})
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def experiment_to_open(client, name: str | None) -> str:
    """The experiment named, or params.yaml's if it holds comparison runs, or else the one
    whose execution is the latest (`make demo` logs to digits-finetune while params.yaml
    names CIFAR-10's), or params.yaml's, new."""
    if name:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise PipelineError(f"--experiment: no MLflow experiment is named {name!r}")
        return experiment.experiment_id
    own = load_params().mlflow_experiment
    experiment = client.get_experiment_by_name(own)
    if experiment and client.search_runs(
        [experiment.experiment_id], COMPARISON_FILTER, max_results=1
    ):
        return experiment.experiment_id
    ids = [e.experiment_id for e in client.search_experiments()]
    latest = client.search_runs(
        ids, COMPARISON_FILTER, order_by=["attributes.start_time DESC"], max_results=1
    )
    return latest[0].info.experiment_id if latest else experiment_id_for(client, own)


# MLflow's job runner (seven huey consumer processes, for its GenAI jobs) serves nothing this
# pipeline logs: a server started without it is up about 4 s sooner and, killed outright,
# frees its port within 2 s rather than 15.
WITHOUT_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def serve(mlflow: str, uri: str, port: int) -> None:
    """Run `mlflow ui` until Ctrl-C, quietly: no line per request, no start-up INFO lines,
    and on Ctrl-C one line rather than each worker's KeyboardInterrupt traceback.

    The server runs in a session of its own, so the terminal's Ctrl-C reaches this process
    alone, which stops the server with SIGTERM (its clean shutdown); if this process is
    killed outright, the kernel sends the server that SIGTERM.
    """
    command = [mlflow, "ui", "--backend-store-uri", uri, "--registry-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--uvicorn-opts", "--no-access-log --log-level warning"]  # fmt: skip
    env = os.environ | {"MLFLOW_LOGGING_LEVEL": "WARNING", "PYTHONWARNINGS": "ignore"}
    env |= WITHOUT_JOB_RUNNER
    server = subprocess.Popen(
        command, env=env, start_new_session=True, preexec_fn=environment.die_with_parent
    )
    try:
        code = server.wait()
    except KeyboardInterrupt:
        stop_group(server)
        print("MLflow UI stopped", flush=True)
        return
    finally:
        if server.poll() is None:
            stop_group(server)
    if code:
        raise PipelineError(f"`mlflow ui` exited with {code}; its lines above say why")


def stop_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM to ``process``'s process group (a server and its workers), SIGKILL after
    ``timeout`` seconds; it is waited for either way."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
