"""The factored student: one latent per agent (joint), per-agent dynamics, reward, value and
policy prior shared across agents and tasks (Fac-TDMPC, Sec. 4.2).

- `StudentConfig` (`config.py`): sizes, tasks and each task's agent partition.
- `FactoredStudent` (`model.py`): the network; `condition(task)` folds the task and agent
  embeddings into first-layer biases once per batch, shared by training and planning.
  Its per-agent networks are `ConditionedMLP`s (`conditioned.py`).
- `AgentLayout` (`agents.py`): split / merge between env actions and agent actions.
- `extend.py`: grow a trained student to new tasks and embodiments, old outputs unchanged.
- Files: `FactoredStudent.save_pretrained` / `from_pretrained` / `push_to_hub`
  (huggingface_hub's `PyTorchModelHubMixin`, `pretrained.py`) give ``model.safetensors`` +
  ``config.json`` + ``README.md``; `load_student` (`loading.py`) is the one loader of a folder,
  a Hub id or a Lightning checkpoint.
"""

from mt_factored.student.agents import AgentLayout
from mt_factored.student.config import StudentConfig, one_joint_per_agent
from mt_factored.student.loading import load_student, read_lightning_checkpoint
from mt_factored.student.model import FactoredStudent, PolicyOutput, StudentConditioning

__all__ = [
    "AgentLayout",
    "FactoredStudent",
    "PolicyOutput",
    "StudentConditioning",
    "StudentConfig",
    "load_student",
    "one_joint_per_agent",
    "read_lightning_checkpoint",
]
