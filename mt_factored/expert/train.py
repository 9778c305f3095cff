"""Compatibility alias: ``python -m mt_factored.expert.train ...`` runs
``python -m mt_factored.train_expert ...`` (the online expert trainer's entry point).

The command kept its old name when the online trainer moved out of the teacher package
(``mt_factored.online``, a layer above ``expert``); this module imports nothing of it and
only hands the command line on.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("mt_factored.train_expert", run_name="__main__", alter_sys=True)
