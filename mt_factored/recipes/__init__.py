"""The Hydra recipes, inside the package (Hydra reads them as ``pkg://mt_factored.recipes``,
so every command finds them whatever the working directory, installed or not).

- ``<command>.yaml``: each command's primary config: its schema (a config dataclass, stored by
  :mod:`mt_factored.schema`), its config groups and where Hydra keeps its record of the run.
- ``recipe/``: experiments for ``train`` / ``finetune`` (``recipe=<name>``); they set only what
  differs from the defaults of the dataclasses.
- ``distill/``, ``trainer/``, ``logger/``: YAML options of those config groups (the default
  options are the dataclasses themselves).
- ``expert_size/``: the model sizes of ``train_expert`` (``model_size=<name>``).

Files shipped with the package live in ``mt_factored/assets`` (``${package_asset:...}``); the
quickstart's experts and data ship with the repository (``${asset:...}``).
"""
