"""Online TD-MPC2: train a single-task expert from scratch in dm_control (where no public one
fits), record its data in the public chunk format, and optionally distill a factored student
from it as it learns (Fac-TDMPC Appendix C.1).

- `OnlineTrainer` (`trainer.py`): the loop (seed steps, MPPI acting, one update per step,
  evaluation, chunks, CSV logs, public checkpoints, exact resume).
- `TDMPC2Learner` (`learner.py`): TD-MPC2's update rule; `EpisodeReplay` (`replay.py`).
- `OnlineDistiller` (`distill.py`): the student that tracks the expert.
- `records.py`: chunks and CSV logs; `config.py`: model sizes and the device.

Entry point: ``python -m mt_factored.train_expert`` (alias ``python -m mt_factored.expert.train``).
"""
