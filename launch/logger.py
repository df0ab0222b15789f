"""Metrics to CSV, TensorBoard (tensorboardX), optionally Weights & Biases, and the console."""

from __future__ import annotations

import csv
import math
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

    def __init__(self, run_dir: str, keep_rows: int | None = None, wandb: dict | None = None):
        self.path = os.path.join(run_dir, "metrics.csv")
        self.wandb = None
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
                if k not in ("phase", "step") and math.isfinite(v):  # NaN: undefined (e.g. no successes)
                    self.tb.add_scalar(f"{row['phase']}/{k}", v, row["step"])
        if self.rows:
            self._write_csv()
        if wandb is not None:
            self._start_wandb(run_dir, **wandb)

    def _start_wandb(self, run_dir: str, project: str, mode: str, config: dict, entity: str = "") -> None:
        """Starts (or, for a resumed run, continues) the W&B run of this folder; ``mode`` 'auto' goes
        offline when the W&B server cannot be reached."""
        import hashlib

        import wandb

        if mode == "auto":
            mode = "online" if _reachable("api.wandb.ai", 443) else "offline"
        name = os.path.basename(os.path.abspath(run_dir))
        run_id = hashlib.sha1(os.path.abspath(run_dir).encode()).hexdigest()[:16]  # stable: resumes continue it
        self.wandb = wandb.init(project=project, entity=entity or None, name=name, id=run_id, resume="allow",
                                dir=run_dir, config=config, mode=mode, reinit="create_new")
        for row in self.rows:  # a resumed run: the kept rows (a W&B run resumed offline starts a new file)
            self._wandb_row(row)

    def _wandb_row(self, row: dict) -> None:
        self.wandb.log({f"{row['phase']}/{k}": v for k, v in row.items() if k != "phase"})

    def summary(self, summary: dict, files: tuple[str, ...] = ()) -> None:
        """Attaches the run's summary (flattened scalars) and ``files`` to the W&B run, when there is one."""
        if self.wandb is None:
            return
        flat = {}

        def walk(prefix, value):
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}{k}/", v)
            elif isinstance(value, (int, float, str)):
                flat[prefix.rstrip("/")] = value

        walk("", {k: v for k, v in summary.items() if k != "evals"})
        self.wandb.summary.update(flat)
        for path in files:
            if os.path.exists(path):
                self.wandb.save(path, base_path=os.path.dirname(path), policy="now")

    def log(self, phase: str, step: int, metrics: dict) -> None:
        """Records scalar ``metrics`` at ``step`` (env steps online, gradient steps in pretraining)."""
        row = {"phase": phase, "step": int(step)}
        for k, v in metrics.items():
            row[k] = float(np.asarray(v))
            if math.isfinite(row[k]):  # NaN stays in metrics.csv (undefined, e.g. mode shares without successes)
                self.tb.add_scalar(f"{phase}/{k}", row[k], int(step))
        self.rows.append(row)
        self._write_csv()
        if self.wandb is not None:
            self._wandb_row(row)

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
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def format_line(phase: str, step: int, metrics: dict, keys: tuple[str, ...]) -> str:
    """One progress line: ``[phase] step  k=v ...`` for the ``keys`` present."""
    parts = [f"{k}={float(metrics[k]):.4g}" for k in keys if k in metrics]
    return f"[{phase}] {step:>9d}  " + "  ".join(parts)
