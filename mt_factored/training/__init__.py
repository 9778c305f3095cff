"""Lightning training of the student: the distillation module, the evaluation callback,
finetuning to new embodiments, and the wiring from a composed config to a fitted run.

- `DistillModule` (`module.py`): distills a frozen expert into a `FactoredStudent`.
- `PlanningEvalCallback` (`callbacks.py`): the student (and the expert) in dm_control.
- `finetune.py`: extend a pretrained student to new tasks, translate batches, freeze.
- `build.py`: config -> task set, expert, data module, module, callback, trainer; fit.

Entry points: ``python -m mt_factored.train`` and ``python -m mt_factored.finetune``.
"""
