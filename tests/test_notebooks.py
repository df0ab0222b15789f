"""The notebooks run top to bottom on a run folder made by a ``:smoke`` run (papermill; a raising cell fails)."""

from __future__ import annotations

import os

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _execute(name, tmp_path, **parameters):
    papermill = pytest.importorskip("papermill")
    out = str(tmp_path / name)
    papermill.execute_notebook(os.path.join(ROOT, "notebooks", name), out, parameters=parameters, cwd=ROOT,
                               progress_bar=False, kernel_name="python3")
    nb = nbformat.read(out, as_version=4)
    text, images = [], 0
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            assert o.output_type != "error", (o.get("ename"), o.get("evalue"))
            text.append(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")))
            images += "image/png" in o.get("data", {})
    return "".join(text), images


def test_inspect_agent_notebook(smoke_run, tmp_path):
    from envs.render import gl_available

    run_dir, _, _ = smoke_run
    text, images = _execute("inspect_agent.ipynb", tmp_path, run_dir=run_dir, num_samples=16)
    assert "qc on point_obstacle" in text and "max |change| per denoising step" in text
    assert "Q: min" in text  # the critic scored the candidates (QC has one)
    assert images >= 3  # the chain, the sampled chunks, the critic's values
    assert ("notebook_ep0" in text) == gl_available()  # the rollout video, where OpenGL exists


def test_compare_runs_notebook(smoke_run, tmp_path):
    run_dir, _, _ = smoke_run
    text, images = _execute("compare_runs.ipynb", tmp_path, paths=[run_dir], reps=100)
    assert "1 finished runs: qc on point_obstacle" in text
    assert "| qc | point_obstacle | success | 1 |" in text and "IQM" in text
    assert images == 2  # the IQM curves and the per-run curves
