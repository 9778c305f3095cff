"""Model cards (``README.md``) of published students and experts.

A card is YAML metadata (library, licence, tags, datasets and, with results, a
``model-index`` of mean returns) and a body: how to download and load the model, its
size, the results table of ``python -m mt_factored.evaluate ... out=results.json``
(per-task returns of student and expert, their ratio, planning ms per step), the
hardware those numbers come from, and what is needed to reproduce the run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from mt_factored.constants import REPO_ROOT
from mt_factored.data.hub import HUB_REPO as TDMPC2_REPO
from mt_factored.hub.files import ArtifactFormatError

if TYPE_CHECKING:
    from mt_factored.expert import TDMPC2Expert
    from mt_factored.planning.episodes import EpisodeStats
    from mt_factored.student import FactoredStudent

LIBRARY_NAME = "mt_factored"
LICENSE = "mit"
EXPERT_TAGS = ["robotics", "reinforcement-learning", "world-model", "model-based-rl", "tdmpc2"]
TDMPC2_PAPER = "https://arxiv.org/abs/2310.16828"

Results = dict[str, dict[str, "EpisodeStats"]]
"""``{model: {task: EpisodeStats}}``, as ``mt_factored.evaluate`` returns and writes it."""

STUDENT_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A factored per-joint world model (a Fac-TDMPC student) for {{ num_tasks }} DMControl tasks\
{% if task_set %} (`{{ task_set }}`){% endif %}, distilled from a multi-task
[TD-MPC2]({{ tdmpc2_paper }}) expert with `mt_factored`. Every joint (agent) gets its own
latent, dynamics, reward, value and policy prior, computed by one set of weights shared by all
joints and tasks, so the planner optimises each joint on its own (decentralized MPPI).

## Use

```bash
pip install mt_factored
hf download {{ repo_id }} --local-dir {{ local_dir }}
```

```python
from mt_factored.student import FactoredStudent

student = FactoredStudent.from_pretrained("{{ local_dir }}")  # or "{{ repo_id }}" (HF cache)
```

```bash
python -m mt_factored.evaluate student={{ local_dir }} tasks=[{{ example_task }}] episodes=10
```

## Model

| | |
|---|---|
| parameters | {{ num_parameters }} |
| tasks | {{ num_tasks }} on {{ num_embodiments }} embodiments |
| agents per task | up to {{ num_agents }} |
| action entries per agent | up to {{ agent_action_dim }} |
| latent per agent | {{ latent_dim }} |
| encoder | {{ num_enc_layers }} x {{ enc_dim }} |
| per-agent networks | {{ num_mlp_layers }} x {{ mlp_dim }}, {{ num_q }} value members |

`config.json` holds every architecture field, the task table (id, name, agents), the
embodiment table and `format_version` {{ format_version }}; `model.safetensors` the weights.

## Results

{{ results }}

## Reproduce

{{ reproduce }}
"""

EXPERT_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A [TD-MPC2]({{ tdmpc2_paper }}) world model ({{ describe }}; {{ num_parameters }} learnable
parameters), published with `mt_factored`. `{{ checkpoint_name }}` is in the public TD-MPC2
checkpoint layout (the reference code loads it); `model.safetensors` + `config.json` hold the
same weights without pickle.

## Use

```bash
hf download {{ repo_id }} {{ checkpoint_name }} --local-dir checkpoints/
python -m mt_factored.train recipe=dmcontrol30 expert=hub:{{ repo_id }}/{{ checkpoint_name }}
```

```python
from mt_factored.expert.hub import expert_from_pretrained

expert = expert_from_pretrained("{{ repo_id }}")
```

## Results

{{ results }}

## Reproduce

{{ reproduce }}
"""

NO_RESULTS = (
    "No evaluation was attached when this card was written. Run "
    "`python -m mt_factored.evaluate ... out=results.json` and publish with "
    "`python -m mt_factored.hub push ... results=results.json`."
)


# ----------------------------------------------------------------------------- results
def read_results(path: str | os.PathLike) -> tuple[Results, dict[str, Any]]:
    """Read ``mt_factored.evaluate``'s results JSON.

    Returns:
        (``{model: {task: EpisodeStats}}``, metadata): top-level keys starting with ``_``
        are metadata (e.g. ``_meta: {hardware: {...}}``), not models.
    """
    from mt_factored.planning.episodes import EpisodeStats

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactFormatError(f"cannot read the results JSON {path}: {err}") from err
    if not isinstance(data, dict):
        raise ArtifactFormatError(f"{path} must hold a JSON object {{model: {{task: ...}}}}")
    meta = {k: v for k, v in data.items() if k.startswith("_")}
    results: Results = {}
    try:
        for model, tasks in data.items():
            if model.startswith("_"):
                continue
            results[model] = {
                task: EpisodeStats(
                    task=task,
                    returns=[float(r) for r in s["returns"]],
                    plan_ms_per_call=float(s["plan_ms_per_call"]),
                    envs_per_call=int(s["envs_per_call"]),
                    plan_ms_single_env=s.get("plan_ms_single_env"),
                )
                for task, s in tasks.items()
            }
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ArtifactFormatError(
            f"{path} is not a results JSON of mt_factored.evaluate "
            f"({{model: {{task: {{returns, plan_ms_per_call, ...}}}}}}): {err!r}"
        ) from err
    if not results:
        raise ArtifactFormatError(f"{path} holds no model results")
    return results, meta


def results_markdown(
    results: Results | None, focus: str, meta: Mapping[str, Any] | None = None
) -> str:
    """The results table (student vs expert when both are there), how it was measured and
    on which hardware (recorded in the results' ``_meta.hardware``, else this machine)."""
    if not results or focus not in results:
        return NO_RESULTS
    from mt_factored.report import comparison_table, returns_table

    if focus == "student" and "expert" in results:
        table = comparison_table(results["student"], results["expert"])
    else:
        table = returns_table(results[focus], title=f"{focus} return")
    episodes = sorted({len(s.returns) for res in results.values() for s in res.values()})
    recorded = (meta or {}).get("_meta", {}).get("hardware")
    where = "recorded with the results" if recorded else "the machine that wrote this card"
    lines = [
        table,
        "",
        f"Returns: mean ± std over {'/'.join(map(str, episodes))} episodes per task "
        "(`python -m mt_factored.evaluate`). ms/step: one planner call for a single "
        "environment at the evaluation's MPPI settings.",
        "",
        f"Hardware ({where}):",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in (recorded or hardware_info()).items()]
    return "\n".join(lines)


def eval_results(results: Results | None, model: str) -> list[EvalResult]:
    """``model-index`` entries: the mean return of ``model`` on every task (Hub RL convention)."""
    if not results or model not in results:
        return []
    return [
        EvalResult(
            task_type="reinforcement-learning",
            dataset_type=task,
            dataset_name=task,
            metric_type="mean_reward",
            metric_value=f"{stats.mean:.2f} +/- {stats.std:.2f}",
        )
        for task, stats in results[model].items()
    ]


# ---------------------------------------------------------------------------- machine
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
    from mt_factored import __version__

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


# ------------------------------------------------------------------------------ cards
def _names(repo_id: str | None, default: str) -> tuple[str, str, str]:
    """(repo id shown, title, local folder of the download command)."""
    repo = repo_id or f"ORG/{default}"
    name = repo.split("/")[-1]
    return repo, name, f"checkpoints/{name}"


def student_card(
    student: FactoredStudent,
    card_data: ModelCardData,
    *,
    repo_id: str | None = None,
    results: Results | None = None,
    results_meta: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    datasets: list[str] | None = None,
) -> ModelCard:
    """The card of a student (``FactoredStudent.save_pretrained(model_card_kwargs=...)``).

    Args:
        card_data: the class's metadata (library, licence, tags); copied, not changed.
        repo_id: where it is published (shown in the commands); None: ``ORG/<name>``.
        results, results_meta: :func:`read_results` of the evaluation.
        training: settings to reproduce the run (distill, optim, seed, steps).
        datasets: Hub datasets it was trained on; default the public TD-MPC2 data.
    """
    from mt_factored.constants import STUDENT_FORMAT_VERSION
    from mt_factored.student.io import embodiment_table, known_task_set

    c = student.config
    data = ModelCardData(**card_data.to_dict())
    data.datasets = list(datasets or [TDMPC2_REPO])
    repo, title, local_dir = _names(repo_id, "factored-student")
    evals = eval_results(results, "student")
    if evals:
        data.eval_results, data.model_name = evals, title
    return ModelCard.from_template(
        data,
        template_str=STUDENT_TEMPLATE,
        title=title,
        repo_id=repo,
        local_dir=local_dir,
        tdmpc2_paper=TDMPC2_PAPER,
        task_set=known_task_set(c.task_names),
        example_task=c.task_names[0],
        num_tasks=c.num_tasks,
        num_embodiments=len(embodiment_table(c)),
        num_parameters=f"{sum(p.numel() for p in student.parameters()):,}",
        num_agents=c.num_agents,
        agent_action_dim=c.agent_action_dim,
        latent_dim=c.latent_dim,
        enc_dim=c.enc_dim,
        num_enc_layers=c.num_enc_layers,
        mlp_dim=c.mlp_dim,
        num_mlp_layers=c.num_mlp_layers,
        num_q=c.num_q,
        format_version=STUDENT_FORMAT_VERSION,
        results=results_markdown(results, "student", results_meta),
        reproduce=reproduce_markdown(training),
    )


def expert_card(
    expert: TDMPC2Expert,
    checkpoint_name: str,
    *,
    repo_id: str | None = None,
    results: Results | None = None,
    results_meta: Mapping[str, Any] | None = None,
    datasets: list[str] | None = None,
) -> ModelCard:
    """The card of an expert folder (see :func:`mt_factored.expert.hub.save_expert_pretrained`)."""
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=LICENSE,
        tags=sorted(EXPERT_TAGS),
        pipeline_tag="reinforcement-learning",
        datasets=list(datasets or [TDMPC2_REPO]),
    )
    repo, title, _ = _names(repo_id, Path(checkpoint_name).stem)
    evals = eval_results(results, "expert")
    if evals:
        data.eval_results, data.model_name = evals, title
    return ModelCard.from_template(
        data,
        template_str=EXPERT_TEMPLATE,
        title=title,
        repo_id=repo,
        tdmpc2_paper=TDMPC2_PAPER,
        describe=expert.config.describe(),
        num_parameters=f"{expert.num_learnable_parameters():,}",
        checkpoint_name=checkpoint_name,
        results=results_markdown(results, "expert", results_meta),
        reproduce=reproduce_markdown(None),
    )
