"""Install: ``pip install -e .`` (add ``.[test]`` for the test suite)."""

from setuptools import setup

setup(
    name="chunkrl",
    version="0.1.0",
    description="RL fine-tuning of chunked diffusion and flow-matching policies in JAX/MJX",
    python_requires=">=3.11",
    packages=["agents", "networks", "envs", "replay", "launch", "configs"],
    install_requires=[
        "jax>=0.10,<0.11",
        "jaxlib>=0.10,<0.11",
        "flax>=0.12,<0.13",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "chex>=0.1.90",
        "mujoco>=3.3",
        "mujoco-mjx>=3.3",
        "playground>=0.2",
        "gymnasium>=1.0",
        "ml-collections>=1.1",
        "absl-py>=2.1",
        "tensorflow-datasets>=4.9.10",
        "array-record>=0.8",
        "tensorboardX>=2.6",
        "tqdm>=4.66",
        "imageio>=2.30",
        "imageio-ffmpeg>=0.4",
        "pillow>=10",
        "matplotlib>=3.8",
        "numpy>=1.26",
        "submitit>=1.5",   # sweeps: Slurm job arrays and local processes (launch/sweep.py)
        "rliable>=1.2",    # IQM and stratified-bootstrap confidence intervals (launch/results.py)
        "pandas<3",        # rliable needs arch<8, whose import fails with pandas 3
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "papermill>=2.6", "ipykernel>=6", "nbformat>=5", "wandb>=0.19.10"],
        "wandb": ["wandb>=0.19.10"],  # --config.log.wandb=True
    },
)
