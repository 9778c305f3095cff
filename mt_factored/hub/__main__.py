"""``python -m mt_factored.hub push ...``: runs :mod:`mt_factored.hub_commands`.

The subcommand lives with the other entry points, above every library package (it uses the
shared runner and the config schema); this module imports nothing of it and only hands the
command line on, so that the hub package stays in its layer.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("mt_factored.hub_commands", run_name="__main__", alter_sys=True)
