"""Entry point: ``python launch/train.py [--config=configs/qc.py[:preset]] [--config.x=y ...]``.

Builds (or loads) the demonstrations, pretrains the chunked BC policy,
fine-tunes it with the configured RL agent in vectorized MJX environments and
writes one run folder (see ``launch/experiment.py``). A mistyped key or a
value of the wrong type is rejected by ml_collections before anything runs.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "qc.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT, "Run config file (with :preset).",
                                          lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every file operation at INFO
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and os.environ.get("SLURM_JOB_ID"):
        import jax  # a multi-node Slurm job: coordinator, process id and count come from the Slurm environment

        jax.distributed.initialize()
    from launch.experiment import run

    run(_CONFIG.value, log=lambda msg: print(msg, flush=True))


if __name__ == "__main__":
    app.run(main)
