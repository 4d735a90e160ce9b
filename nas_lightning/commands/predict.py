"""``search.py predict``: adapt on a user's measured rows and rank the whole space."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from nas_lightning.commands.common import one_task, predictor_for
from nas_lightning.errors import UserError
from nas_lightning.files import atomic, check_writable
from nas_lightning.rankers.predicted import metric_name, predicted_values
from nas_lightning.rankers.ranking import predict_all


def predict(task: str, ckpt: str, out: str, device: str = "auto") -> int:
    """Adapt on every measured row of TASK (e.g. your 10 latencies) and write every architecture
    of the space, best first, to a CSV.

    Args:
        task: your measurements, e.g. csv:my_device.csv.
        ckpt: predictor checkpoint from train.py.
        out: the CSV file to write (rank, arch, score, measured value; on a lower-better table of
            positive values such as latency_ms, also the predicted value in the table's unit).
        device: auto, cpu or cuda: where the predictor runs.
    """
    check_writable(out, "--out")  # before any work: a path under a file or in a read-only folder
    target = one_task(task)
    if target.size < 2:
        raise UserError(f"predict: task {target.name} holds {target.size} measured architecture; give at least 2")
    path = Path(out)
    module = predictor_for(ckpt, target, device, "predict")
    archs, scores, measured = predict_all(target, module)
    order = torch.argsort(scores, descending=True, stable=True)
    column = metric_name(target)
    values = predicted_values(target, archs, scores, measured)
    header = ["rank", "arch", "score"] + ([] if values is None else [f"predicted_{column}"]) + [f"measured_{column}"]
    with atomic(path) as (tmp,), open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r, i in enumerate(order.tolist(), start=1):
            m = measured.get(int(archs[i]))
            predicted = [] if values is None else [f"{float(values[i]):.6g}"]
            w.writerow([r, module.space.to_string(int(archs[i])), f"{float(scores[i]):.6g}", *predicted,
                        "" if m is None else f"{m:.6g}"])
    what = ("score: higher is better" if values is None else
            f"predicted_{column}: in the table's unit, the score mapped by a monotone fit on the measured rows")
    print(f"ranked {len(archs)} architectures from {target.size} measurements of {target.name}, best first "
          f"(direction {target.direction}; {what})")
    print(f"wrote {path}")
    return 0
