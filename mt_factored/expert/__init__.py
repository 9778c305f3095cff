"""The TD-MPC2 expert (teacher) and nothing else: its world model, the public checkpoint files,
per-task experts behind the multi-task layout, and the recipe's ``expert=`` forms.

- `ExpertConfig` (`config.py`): sizes and task facts; `from_size(5)` is mt30-5M.
- `TDMPC2Expert` (`model.py`): the world model; state-dict keys are TD-MPC2's public layout;
  `ensemble.py` its stacked Q ensemble.
- `checkpoint.py`: reads both public key layouts, writes the new one (atomic); `shapes.py`
  reads an architecture off a file's shapes.
- `Expert` (`interface.py`): what students, distillation and planners use; `PerTaskExperts`
  (`per_task.py`) offers it for a set of single-task experts.
- `resolve.py`: ``expert=`` values (a path, ``hub:ORG/NAME/file.pt``, ``{task: path}``) -> an
  expert; `pretrained.py`: an expert as a Hugging Face model folder.

Training an expert online is `mt_factored.online`, one layer up.
"""

from mt_factored.expert.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    load_state_dict_any_layout,
    public_state_dict,
    read_checkpoint,
    save_checkpoint,
)
from mt_factored.expert.config import MODEL_SIZES, ExpertConfig
from mt_factored.expert.interface import Expert
from mt_factored.expert.model import PolicyOutput, TDMPC2Expert, load_single_task_expert
from mt_factored.expert.per_task import PerTaskExperts

__all__ = [
    "MODEL_SIZES",
    "CheckpointError",
    "CheckpointMismatchError",
    "Expert",
    "ExpertConfig",
    "PerTaskExperts",
    "PolicyOutput",
    "TDMPC2Expert",
    "load_single_task_expert",
    "load_state_dict_any_layout",
    "public_state_dict",
    "read_checkpoint",
    "save_checkpoint",
]
