"""The dataset card (`README.md`) of an exported dataset folder.

YAML metadata the Hub and `datasets` read: licence, tags, size category and ``configs:``,
one config per task (``data/<task>/*.parquet``) plus ``default`` (every file), so
``datasets.load_dataset(folder_or_repo, name="walker-stand", streaming=True)`` works without a
loading script. The body: the columns and their convention, the task table, and how the
data was made.
"""

from __future__ import annotations

from typing import Any

import yaml

TDMPC2_PAPER = "https://arxiv.org/abs/2310.16828"
TAGS = ["robotics", "reinforcement-learning", "dm-control", "tdmpc2", "offline-rl", "mt_factored"]


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket of a number of rows."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    return next((name for bound, name in bounds if rows < bound), "1B<n<10B")


def card_metadata(info: dict[str, Any], license: str = "mit") -> dict[str, Any]:
    """The card's YAML metadata (a plain dict)."""
    split = "train"
    configs = [
        {
            "config_name": "default",
            "data_files": [{"split": split, "path": "data/*/*.parquet"}],
            "default": True,
        }
    ]
    configs += [
        {
            "config_name": t["name"],
            "data_files": [{"split": split, "path": f"data/{t['name']}/*.parquet"}],
        }
        for t in info["tasks"]
    ]
    return {
        "license": license,
        "task_categories": ["robotics", "reinforcement-learning"],
        "tags": TAGS,
        "size_categories": [size_category(info["num_frames"])],
        "pretty_name": f"TD-MPC2 trajectories ({len(info['tasks'])} tasks)",
        "configs": configs,
    }


def dataset_card(info: dict[str, Any], license: str = "mit") -> str:
    """The whole card: ``---`` YAML ``---`` and the Markdown body."""
    meta = yaml.safe_dump(card_metadata(info, license), sort_keys=False, width=1000)
    rows = "\n".join(
        f"| {t['id']} | {t['name']} | {t['action_dim']} | {t['episodes']:,} | {t['frames']:,} |"
        for t in info["tasks"]
    )
    dtypes = ", ".join(f"`{k}` {v}" for k, v in info["dtypes"].items())
    source = info.get("source") or "an mt_factored dataset"
    return f"""---
{meta.rstrip()}
---

# TD-MPC2 trajectories ({len(info["tasks"])} tasks, {info["num_episodes"]:,} episodes)

DMControl episodes in the format of the public [TD-MPC2]({TDMPC2_PAPER}) data, one row per
frame, one folder of Parquet files per task (one `datasets` config each; `default` holds them
all). Read it with `datasets`, no loading script:

```python
from datasets import load_dataset

frames = load_dataset("PATH_OR_REPO", name="{info["tasks"][0]["name"]}", split="train", streaming=True)
```

or train from it with `mt_factored`: `python -m mt_factored.train recipe=... data=hf:ORG/NAME`
(or `data=<this folder>`), which streams windows of consecutive frames of one episode.

## Columns

| column | type | meaning |
|---|---|---|
| `episode_index` | int64 | the episode's position in the source data |
| `frame_index` | int32 | 0 .. {info["frames"] - 1} (frame 0 is the reset observation) |
| `task_id` | int32 | task id in the `{info.get("task_set")}` task set |
| `task` | string | task name |
| `observation` | list[{info["obs_dim"]}] | observation, zero-padded to {info["obs_dim"]} |
| `action` | list[{info["action_dim"]}] | the action that led to this frame's observation (zero-padded; NaN at frame 0) |
| `reward` | float | the reward received with this frame's observation (NaN at frame 0) |
| `terminated` | bool | episode ended by the environment here (never in DMControl) |
| `action_mask` | list[{info["action_dim"]}] of bool | which action entries the task uses |

So a training window of horizon H from frame t uses `observation[t..t+H]`, `action[t+1..t+H]`
and `reward[t+1..t+H]` of one episode. Frame 0 keeps the source's unused action/reward slot,
so the official chunk format is restored exactly from these files
(`python -m mt_factored.data export source=<this folder> out=<dir> format=chunks`).
Source dtypes: {dtypes}. `meta/info.json` has the dims, the task table, the format version
and the SHA-256 of every file.

## Tasks

| id | task | action dims | episodes | frames |
|---|---|---|---|---|
{rows}

## How it was made

Exported with `mt_factored` {info["codebase_version"]}
(`python -m mt_factored.data export source=... out=...`) from {source}:
{info["num_episodes"]:,} episodes of {info["frames"]} frames ({info["num_frames"]:,} rows).
Episodes of the public TD-MPC2 data were collected by TD-MPC2 agents during online training
(Hansen et al., 2024); data recorded by `python -m mt_factored.train_expert` is collected the
same way by the experts it trains.
"""
