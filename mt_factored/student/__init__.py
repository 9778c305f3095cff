"""The factored student: one latent per agent (joint), per-agent dynamics, reward, value and
policy prior shared across agents and tasks (Fac-TDMPC, Sec. 4.2).

- `StudentConfig` (`config.py`): sizes, tasks and each task's agent partition.
- `FactoredStudent` (`model.py`): the network; `condition(task)` folds the task and agent
  embeddings into first-layer biases once per batch, shared by training and planning.
- `AgentLayout` (`partition.py`): split / merge between env actions and agent actions.
- Hub conventions through huggingface_hub's `PyTorchModelHubMixin` (`io.py`):
  `FactoredStudent.save_pretrained` / `from_pretrained` / `push_to_hub` give
  ``model.safetensors`` + ``config.json`` + ``README.md`` (model card).
"""

from mt_factored.student.config import StudentConfig, one_joint_per_agent
from mt_factored.student.io import load_student, save_student
from mt_factored.student.model import FactoredStudent, PolicyOutput, StudentConditioning
from mt_factored.student.partition import AgentLayout

__all__ = [
    "AgentLayout",
    "FactoredStudent",
    "PolicyOutput",
    "StudentConditioning",
    "StudentConfig",
    "load_student",
    "one_joint_per_agent",
    "save_student",
]
