"""What is measured on trained models: evaluation runs in dm_control, robustness to broken
joints, the planning-budget sweep, interpretability plots, partition discovery, and the
curves of online expert runs.

- `models.py`: the experts and students an analysis command names, loaded once.
- `evaluation.py`: returns and latency per model and task, the results JSON.
- `robustness.py` and `perturbations.py`: robustness perturbations of one joint's command.
- `budget/`: return and latency over MPPI budgets and the smallest budget that keeps 95%.
- `viz.py`: t-SNE of per-joint latents and per-joint H-step returns.
- `partition/`: sub-dynamics discovery (ED2-style joint groups) and the recipe it writes.
- `expert_curves.py`: return vs steps of online expert runs.

Entry points: ``python -m mt_factored.evaluate | budget_sweep | viz | partition``.
"""
