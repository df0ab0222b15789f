"""Metrics to CSV, TensorBoard (tensorboardX) and the console."""

from __future__ import annotations

import csv
import os
import shutil

import numpy as np
from tensorboardX import SummaryWriter


class Logger:
    """Writes ``metrics.csv`` (one row per call, columns grown as needed) and TensorBoard events.

    Args:
      run_dir: the run folder; files go to ``run_dir/metrics.csv`` and ``run_dir/tb/``.
      keep_rows: for a resumed run, the number of rows of the existing
        ``metrics.csv`` that its checkpoint had logged: those are kept, any
        later ones (logged after the checkpoint, before the kill) are dropped,
        and TensorBoard's events are rewritten from the kept rows, so that
        nothing is logged twice or lost. None starts afresh.
    """

    def __init__(self, run_dir: str, keep_rows: int | None = None):
        self.path = os.path.join(run_dir, "metrics.csv")
        self.rows: list[dict] = []
        tb_dir = os.path.join(run_dir, "tb")
        if keep_rows is not None and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                self.rows = [{k: (v if k == "phase" else float(v)) for k, v in row.items() if v != ""}
                             for row in csv.DictReader(f)][:keep_rows]
            for row in self.rows:
                row["step"] = int(row["step"])
        if os.path.isdir(tb_dir):
            shutil.rmtree(tb_dir)
        self.tb = SummaryWriter(tb_dir)
        for row in self.rows:
            for k, v in row.items():
                if k not in ("phase", "step"):
                    self.tb.add_scalar(f"{row['phase']}/{k}", v, row["step"])
        if self.rows:
            self._write_csv()

    def log(self, phase: str, step: int, metrics: dict) -> None:
        """Records scalar ``metrics`` at ``step`` (env steps online, gradient steps in pretraining)."""
        row = {"phase": phase, "step": int(step)}
        for k, v in metrics.items():
            row[k] = float(np.asarray(v))
            self.tb.add_scalar(f"{phase}/{k}", row[k], int(step))
        self.rows.append(row)
        self._write_csv()

    def _write_csv(self) -> None:
        fields: list[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def close(self) -> None:
        self.tb.close()


def format_line(phase: str, step: int, metrics: dict, keys: tuple[str, ...]) -> str:
    """One progress line: ``[phase] step  k=v ...`` for the ``keys`` present."""
    parts = [f"{k}={float(metrics[k]):.4g}" for k in keys if k in metrics]
    return f"[{phase}] {step:>9d}  " + "  ".join(parts)
