"""A non-editable install runs from any working directory: the wheel holds the recipes and the
smoke recipe's files, ``train recipe=smoke`` and ``evaluate --help`` run from /tmp, and the
quickstart (whose files ship with the repository only) stops with a one-line error.

Offline: the wheel is built with this environment's setuptools (no build isolation) and
installed with ``--no-deps`` into a fresh venv that reads the dependencies from this one's
site-packages (a plain path, so the editable install here is not seen).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEEL_MUST_HOLD = (
    "mt_factored/recipes/train.yaml",
    "mt_factored/recipes/recipe/smoke.yaml",
    "mt_factored/recipes/recipe/quickstart.yaml",
    "mt_factored/recipes/distill/mse.yaml",
    "mt_factored/recipes/expert_size/cpu.yaml",
    "mt_factored/assets/smoke/cartpole-balance.pt",
    "mt_factored/assets/smoke/data/chunk_0.pt",
    "mt_factored/tasks/assets/reacher_three_links.xml",
)


def copy_of_the_repository(dest: Path) -> Path:
    """What ``pip install .`` sees in a fresh clone: the package, pyproject and README."""
    dest.mkdir()
    shutil.copytree(
        ROOT / "mt_factored", dest / "mt_factored", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def run(cmd: list[str], cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env}
    environ.pop("PYTHONPATH", None)
    return subprocess.run(
        cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the python of a fresh venv holding the wheel, the wheel)."""
    root = tmp_path_factory.mktemp("install")
    source = copy_of_the_repository(root / "repo")
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(root / "dist"), str(source)],
        cwd=root,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("mt_factored-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root
        ).stdout.strip()
    )
    # The dependencies come from this environment; a plain path line does not run its .pth
    # files, so its editable mt_factored stays out of sight.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], root)
    assert done.returncode == 0, done.stderr[-2000:]
    return python, wheel


@pytest.mark.slow
def test_the_wheel_holds_the_recipes_and_the_smoke_files(installed) -> None:
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in WHEEL_MUST_HOLD if n not in names]
    assert not missing, missing
    assert not any(n.startswith(("tests/", "checkpoints/", "data/")) for n in names)


@pytest.mark.slow
def test_installed_commands_run_from_any_directory(installed, tmp_path: Path) -> None:
    python, _ = installed
    where = run([str(python), "-c", "import mt_factored; print(mt_factored.__file__)"], tmp_path)
    assert "site-packages" in where.stdout and str(ROOT) not in where.stdout, where.stdout

    helped = run([str(python), "-m", "mt_factored.evaluate", "--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert (
        "usage: python -m mt_factored.evaluate" in helped.stdout and "# Episodes" in helped.stdout
    )

    smoke = run(
        [str(python), "-m", "mt_factored.train", "recipe=smoke", f"run_dir={tmp_path / 'run'}",
         "trainer.enable_progress_bar=false"],
        tmp_path, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"),
    )  # fmt: skip
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    assert "| cartpole-balance |" in smoke.stdout and "student return" in smoke.stdout
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()

    quickstart = run([str(python), "-m", "mt_factored.train", "recipe=quickstart"], tmp_path)
    assert quickstart.returncode == 2
    (line,) = [ln for ln in quickstart.stderr.splitlines() if ln.startswith("error: ")]
    assert "checkpoints/quickstart/cartpole-balance.pt is not here" in line
    assert "clone the mt_factored repository" in line
