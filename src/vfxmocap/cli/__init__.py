"""`vfx`: the command line. Parses, calls the layers below, renders results.

Exit codes: 0 ok, 1 internal error, 2 usage or invalid parameters, 3 input error,
4 missing model or extra, 5 device error, 130 cancelled. User mistakes print one line (and
a hint), never a traceback; `--debug` adds the traceback.

One module per command group: `system` (doctor, probe, models, config, version),
`workflows` (run, the friendly per-workflow commands, live, demo) and `service` (serve,
worker, submit, jobs).
"""

# Importing a group registers its commands; `vfx --help` lists them in this order.
from vfxmocap.cli import system, workflows, service  # noqa: F401, I001
from vfxmocap.cli.app import app, entrypoint, main

__all__ = ["app", "entrypoint", "main"]
