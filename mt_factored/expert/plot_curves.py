"""Compatibility alias: ``python -m mt_factored.expert.plot_curves ...`` runs
``python -m mt_factored.plot_expert_curves ...`` (the plot moved to ``mt_factored.analysis``;
this module imports nothing of it and only hands the command line on)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("mt_factored.plot_expert_curves", run_name="__main__", alter_sys=True)
