"""Running experiments: ``train.py``, ``sweep.py``, ``results.py``; :func:`load_run` for notebooks."""


def load_run(path: str, step: int | None = None):
    """A run folder's config, agent, normaliser, task and summary (see :func:`launch.experiment.load_run`)."""
    from launch.experiment import load_run as _load_run

    return _load_run(path, step)
