"""``python -m mt_factored.data prepare|info|verify ...``: runs :mod:`mt_factored.data_commands`.

The subcommands live with the other entry points, above every library package (they use the
shared runner and the config schema); this module imports nothing of them and only hands the
command line on, so that the data package stays in its layer.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("mt_factored.data_commands", run_name="__main__", alter_sys=True)
