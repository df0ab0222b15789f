"""Agents: one module per algorithm, each an immutable ``flax.struct.PyTreeNode``."""

from __future__ import annotations

import importlib

AGENTS = {"bc": "BCAgent", "qc": "QCAgent", "qc_fql": "QCFQLAgent", "dql": "DQLAgent",
          "guided": "GuidedAgent", "dppo": "DPPOAgent", "ppo": "PPOAgent"}  # config.agent_name -> class in agents/<agent_name>.py


def agent_class(name: str):
    """The agent class for ``config.agent_name``.

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    if name not in AGENTS:
        raise ValueError(f"config.agent_name: expected one of {sorted(AGENTS)}, got {name!r}")
    return getattr(importlib.import_module(f"agents.{name}"), AGENTS[name])
