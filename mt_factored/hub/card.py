"""Model cards (``README.md``) of published students and experts, written by the Hub layer.

A card is YAML metadata (library, licence, tags, datasets and, with results, a
``model-index`` of mean returns) and a body: how to download and load the model, its
size, the results table of ``python -m mt_factored.evaluate ... out=results.json``
(per-task returns of student and expert, their ratio, planning ms per step), the
hardware those numbers come from, and what is needed to reproduce the run. The models'
own ``save_pretrained`` write a short card; ``python -m mt_factored.hub push`` hands them
these ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from mt_factored.artifacts.provenance import reproduce_markdown
from mt_factored.constants import (
    EXPERT_TAGS,
    LIBRARY_NAME,
    LICENSE,
    PIPELINE_TAG,
    STUDENT_FORMAT_VERSION,
    STUDENT_TAGS,
)
from mt_factored.data.download import HUB_REPO as TDMPC2_REPO
from mt_factored.expert import TDMPC2Expert
from mt_factored.hub.results import Results, eval_results, results_markdown
from mt_factored.student import FactoredStudent
from mt_factored.student.pretrained import embodiment_table, known_task_set

TDMPC2_PAPER = "https://arxiv.org/abs/2310.16828"

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

# a local folder, or the Hub id "{{ repo_id }}" (through the HF cache)
student = FactoredStudent.from_pretrained("{{ local_dir }}")
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
{% if about %}
## Training

{{ about }}
{% endif %}
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
from mt_factored.expert.pretrained import expert_from_pretrained

expert = expert_from_pretrained("{{ repo_id }}")
```

## Results

{{ results }}

## Reproduce

{{ reproduce }}
"""


# ------------------------------------------------------------------------------ cards
def card_data(
    tags: list[str], datasets: list[str] | None, base_model: str | list[str] | None = None
) -> ModelCardData:
    """The card's metadata: library, licence, tags, pipeline, the datasets (None: the public
    TD-MPC2 data; an empty list: none) and the model it was distilled from (``base_model``,
    when known)."""
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=LICENSE,
        tags=sorted(tags),
        pipeline_tag=PIPELINE_TAG,
        datasets=list(datasets) or None if datasets is not None else [TDMPC2_REPO],
        base_model=base_model or None,
    )


def _card(
    role: str,
    template: str,
    tags: list[str],
    default_name: str,
    *,
    repo_id: str | None,
    results: Results | None,
    results_meta: Mapping[str, Any] | None,
    datasets: list[str] | None,
    training: Mapping[str, Any] | None = None,
    base_model: str | list[str] | None = None,
    **fields: Any,
) -> ModelCard:
    """A card of ``role`` ("student" or "expert"): metadata, evaluation results, the names
    every template shows (title, repo id, download folder) and the template's own ``fields``."""
    data = card_data(tags, datasets, base_model)
    repo = repo_id or f"ORG/{default_name}"
    title = repo.split("/")[-1]
    evals = eval_results(results, role)
    if evals:
        data.eval_results, data.model_name = evals, title
    return ModelCard.from_template(
        data,
        template_str=template,
        title=title,
        repo_id=repo,
        local_dir=f"checkpoints/{title}",
        tdmpc2_paper=TDMPC2_PAPER,
        results=results_markdown(results, role, results_meta),
        reproduce=reproduce_markdown(training),
        **fields,
    )


def student_card(
    student: FactoredStudent,
    *,
    repo_id: str | None = None,
    results: Results | None = None,
    results_meta: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    datasets: list[str] | None = None,
    base_model: str | list[str] | None = None,
    about: str | None = None,
) -> ModelCard:
    """The card of a student (``FactoredStudent.save_pretrained(model_card_kwargs=...)``).

    Args:
        repo_id: where it is published (shown in the commands); None: ``ORG/<name>``.
        results, results_meta: :func:`read_results` of the evaluation.
        training: settings to reproduce the run (distill, optim, seed, steps).
        datasets: Hub datasets it was trained on; default the public TD-MPC2 data.
        base_model: Hub id(s) of the teacher it was distilled from (card metadata).
        about: Markdown of a "Training" section (teacher, data, how to reproduce the returns).
    """
    c = student.config
    return _card(
        "student",
        STUDENT_TEMPLATE,
        STUDENT_TAGS,
        "factored-student",
        repo_id=repo_id,
        results=results,
        results_meta=results_meta,
        datasets=datasets,
        training=training,
        base_model=base_model,
        about=about,
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
    """The card of an expert folder (see :func:`mt_factored.expert.pretrained.save_expert_pretrained`)."""
    return _card(
        "expert",
        EXPERT_TEMPLATE,
        EXPERT_TAGS,
        Path(checkpoint_name).stem,
        repo_id=repo_id,
        results=results,
        results_meta=results_meta,
        datasets=datasets,
        describe=expert.config.describe(),
        num_parameters=f"{expert.num_learnable_parameters():,}",
        checkpoint_name=checkpoint_name,
    )
