"""Run metadata recorded beside results and models: the hardware, the library version and the
source commit, and the "reproduce" section that model cards carry."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from mt_factored import __version__
from mt_factored.constants import REPO_ROOT


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_info() -> dict[str, str]:
    """CPU, core and thread counts, torch and Python versions (and the GPU when there is one)."""
    info = {
        "cpu": cpu_model(),
        "logical cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """``HEAD`` of the source checkout (marked when it has uncommitted changes); None if unknown."""
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha} (with uncommitted changes)" if dirty else sha


def reproduce_markdown(training: Mapping[str, Any] | None) -> str:
    """Library version, source commit and the training settings."""
    commit = git_commit()
    lines = [f"- mt_factored {__version__}" + (f", commit `{commit}`" if commit else "")]
    lines.append("- `config.json`: every architecture field and the task facts")
    if training:
        lines += [
            "- training settings:",
            "",
            "```yaml",
            yaml.safe_dump(dict(training), sort_keys=False).strip(),
            "```",
        ]
    return "\n".join(lines)
