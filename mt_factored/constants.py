"""Names shared across the package: batch keys, file names, format versions.

Numbers that describe the public TD-MPC2 artifacts (padding sizes) are facts of
those formats, not tunable hyperparameters; hyperparameters live in the config dataclasses
and the recipes (mt_factored/recipes).
"""

from pathlib import Path

# Batch keys of a training window (see mt_factored.data).
OBS = "obs"
ACTION = "action"
REWARD = "reward"
TASK = "task"
EXPERT_PLANNED = "expert_planned"
"""Batch key: ``[B]`` bool, True for windows whose actions are the expert planner's sequence
at their first observation (closed-loop rows labelled by the expert)."""
TERMINATED = "terminated"

# Padding of the public multi-task data and checkpoints (mt30 / mt80).
MT_OBS_DIM = 24
MT_ACTION_DIM = 6

# File names of the artifacts this project writes.
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
SHARD_INDEX_NAME = "index.json"
LAST_CKPT_NAME = "last.ckpt"

# Hub metadata of the models this project publishes (model cards, mixin class arguments).
LIBRARY_NAME = "mt_factored"
LICENSE = "mit"
PIPELINE_TAG = "reinforcement-learning"
STUDENT_TAGS = ["robotics", "reinforcement-learning", "world-model", "model-based-rl", "fac-tdmpc"]
EXPERT_TAGS = ["robotics", "reinforcement-learning", "world-model", "model-based-rl", "tdmpc2"]

# A Lightning checkpoint of the distillation module: the student's architecture under this
# hyperparameter and its weights under this state-dict prefix (read without Lightning).
STUDENT_HPARAMS_KEY = "student"
STUDENT_STATE_PREFIX = "student."

# Bumped whenever the on-disk layout of that artifact changes incompatibly.
STUDENT_FORMAT_VERSION = 1
EXPERT_FORMAT_VERSION = 1
SHARD_FORMAT_VERSION = 1

# Folders of the package (also in a wheel install).
PACKAGE_DIR = Path(__file__).resolve().parent
RECIPES_DIR = PACKAGE_DIR / "recipes"
PACKAGE_ASSETS_DIR = PACKAGE_DIR / "assets"
"""Small files installed with the package (the smoke recipe's tiny expert and data)."""

# Folders of the repository checkout (they exist when the package runs from a clone).
REPO_ROOT = PACKAGE_DIR.parent
SHIPPED_DATA_DIR = REPO_ROOT / "data"
SHIPPED_CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"
