"""The MLflow UI on the local store, opened on the comparison runs.

    make ui        # python -m src.ui [--port 5000]

Prints the link to the experiment's comparison runs (one per pipeline execution), their
headline metrics and the params sweeps change as columns, then runs `mlflow ui` on 127.0.0.1
with one worker process, enough on a small machine. A store that does not open, a port out of
range or taken by another server is one line and no link. The experiment is a model-training one,
so MLflow 3 opens its runs, not its GenAI view.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.parse

from src.finetune import environment
from src.finetune.entrypoint import run_stage
from src.finetune.errors import PipelineError
from src.finetune.evaluation.metrics import HEADLINE, TTA_HEADLINE
from src.finetune.params import load_params
from src.finetune.tracking.mlflow.runs import COMPARISON_FILTER, experiment_id_for
from src.finetune.tracking.mlflow.store import (
    Store,
    open_store,
    store_errors_as_one_line,
    tracking_uri,
)

NAME = "ui"
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=port_number, default=5000, help="1-65535 (default 5000)")
    parser.add_argument(
        "--experiment",
        help="the MLflow experiment to open (default: params.yaml's, or if it has no runs yet "
        "the one with the latest execution: the demo's after `make demo`)",
    )
    args = parser.parse_args(argv)
    uri = tracking_uri()
    if Store(uri).database is None:
        raise PipelineError(
            f"MLFLOW_TRACKING_URI is {uri}: open that server's own UI, or unset it for the "
            "local store"
        )
    with store_errors_as_one_line(uri), open_store(uri) as client:
        experiment_id = experiment_to_open(client, args.experiment)
        share_comparison_view(client, experiment_id)
    mlflow = shutil.which("mlflow")
    if mlflow is None:
        raise PipelineError("mlflow not found; run `make install`, then `make ui`")
    claim_port(args.port)
    base = f"http://127.0.0.1:{args.port}"
    print(f"MLflow UI: {comparison_runs_link(base, experiment_id)}", flush=True)
    print("(one row per pipeline execution; Ctrl-C stops the UI)", flush=True)
    serve(mlflow, uri, args.port)


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


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def claim_port(port: int) -> None:
    """Refuse a port something else listens on before printing a link to it: the link would
    open that other server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except PermissionError as error:
            why = " (ports below 1024 need root)" if port < 1024 else ""
            raise PipelineError(
                f"port {port} on 127.0.0.1 is refused to this user: {error.strerror}{why}; "
                "choose another: make ui ARGS='--port 5001'"
            ) from None
        except OSError as error:
            raise PipelineError(
                f"port {port} on 127.0.0.1 is taken ({error.strerror}); stop what listens "
                "there, or choose another: make ui ARGS='--port 5001'"
            ) from None


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
    server = subprocess.Popen(
        command, env=env, start_new_session=True, preexec_fn=environment.die_with_parent
    )
    try:
        code = server.wait()
    except KeyboardInterrupt:
        _stop(server)
        print("MLflow UI stopped", flush=True)
        return
    finally:
        if server.poll() is None:
            _stop(server)
    if code:
        raise PipelineError(f"`mlflow ui` exited with {code}; its lines above say why")


def _stop(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


if __name__ == "__main__":
    run_stage(NAME, main)
