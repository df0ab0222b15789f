"""The run folder's learning-curve plot (matplotlib, headless)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt  # noqa: E402

STAGE_STYLE = {"bc": ("BC", "tab:gray", "s"), "offline_rl": ("after offline RL", "tab:blue", "D"),
               "online": ("online fine-tuning", "tab:red", "o"), "finetuned": ("online fine-tuning", "tab:red", "o")}


def learning_curve(evals: list[dict], path: str, *, title: str = "", expert: float | None = None,
                   metric: str = "success") -> str:
    """Success rate (or mean return, ``metric='return'``) against online env steps, with one standard error bars.

    Args:
      evals: evaluation points in run order, each ``{"stage": "bc" |
        "offline_rl" | "online" | "finetuned", "env_steps": int, "success":
        float in [0, 1], "success_stderr": float}``. BC and offline RL sit at
        0 env steps (they use none); the online curve starts from the
        offline-RL point, which is where fine-tuning starts.
      path: PNG file to write.
      title: figure title.
      expert: the demonstrator's success rate, drawn as a dotted line.
      metric: ``'success'`` or ``'return'`` (tasks without a success signal; no error bars).

    Returns:
      ``path``.

    Raises:
      ValueError: ``evals`` is empty or has an unknown stage.
    """
    if not evals:
        raise ValueError("learning_curve: no evaluation points")
    for e in evals:
        if e["stage"] not in STAGE_STYLE:
            raise ValueError(f"learning_curve: unknown stage {e['stage']!r}; expected one of {sorted(STAGE_STYLE)}")
    if metric not in ("success", "return"):
        raise ValueError(f"learning_curve: metric must be 'success' or 'return', got {metric!r}")

    def err(e):
        return e.get(f"{metric}_stderr", 0.0)

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    online = [e for e in evals if e["stage"] in ("offline_rl", "online", "finetuned")]
    if not any(e["stage"] == "offline_rl" for e in evals):  # no offline phase: online starts from BC
        online = [e for e in evals if e["stage"] == "bc"][-1:] + online
    if len(online) == 1 and online[0]["stage"] != "bc":  # a single point (from scratch, no evaluation before the end)
        ax.errorbar([online[0]["env_steps"]], [online[0][metric]], yerr=[err(online[0])], color="tab:red",
                    marker="o", ms=7, capsize=3, linestyle="none", label=f"final: {online[0][metric]:.2f}")
    if len(online) > 1:
        ax.errorbar([e["env_steps"] for e in online], [e[metric] for e in online],
                    yerr=[err(e) for e in online], color="tab:red", marker="o", ms=4,
                    capsize=3, label="online fine-tuning")
    for stage in ("bc", "offline_rl"):
        for e in (e for e in evals if e["stage"] == stage):
            label, color, marker = STAGE_STYLE[stage]
            ax.errorbar([e["env_steps"]], [e[metric]], yerr=[err(e)], color=color,
                        marker=marker, ms=7, capsize=3, linestyle="none", label=f"{label}: {e[metric]:.2f}",
                        zorder=3)
    if expert is not None:
        ax.axhline(expert, color="black", linestyle=":", linewidth=1, label=f"expert (data): {expert:.2f}")
    ax.set_xlabel("online env steps")
    ax.set_ylabel("success rate" if metric == "success" else "mean episode return")
    if metric == "success":
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
