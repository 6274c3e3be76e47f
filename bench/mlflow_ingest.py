"""The MLflow side of bench/ingest.py; runs under the MLflow bench venv's python, not ours.

Reads the same metrics.jsonl, turns every numeric field into an ``mlflow.entities.Metric``
and logs them with ``MlflowClient.log_batch`` (1000 metrics per call, MLflow's limit) into
a SQLite-backed tracking store. Prints one JSON line: seconds spent reading + logging
(MLflow's import and run creation are excluded) and the points written.

    python bench/mlflow_ingest.py METRICS_JSONL TRACKING_DB
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time


def main(path: str, db: str) -> int:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run_id = client.create_run(client.create_experiment("ingest-bench")).info.run_id
    batch: list[Metric] = []
    points = 0
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            record = json.loads(line)
            step = int(record.pop("step"))
            stamp = int(time.time() * 1000)
            for key, value in record.items():
                batch.append(Metric(key, float(value), stamp, step))
            if len(batch) >= 1000:
                client.log_batch(run_id, metrics=batch)
                points += len(batch)
                batch = []
    if batch:
        client.log_batch(run_id, metrics=batch)
        points += len(batch)
    seconds = time.perf_counter() - t0
    stored = sqlite3.connect(db).execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    print(json.dumps({"seconds": seconds, "points": points, "stored": stored}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
