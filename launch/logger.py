"""Metrics to CSV, TensorBoard (tensorboardX) and the console."""

from __future__ import annotations

import csv
import os

import numpy as np
from tensorboardX import SummaryWriter


class Logger:
    """Writes ``metrics.csv`` (one row per call, columns grown as needed) and TensorBoard events.

    Args:
      run_dir: the run folder; files go to ``run_dir/metrics.csv`` and ``run_dir/tb/``.
    """

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, "metrics.csv")
        self.rows: list[dict] = []
        self.tb = SummaryWriter(os.path.join(run_dir, "tb"))

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
