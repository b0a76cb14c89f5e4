"""The ``turbomode`` command: a thin adapter over the library, one module per command group.

The root app is :data:`turbomode.cli.main.app` (the console script and ``python -m
turbomode``); what the group modules share (settings from the global options, the one error
handler, the consoles) is in :mod:`turbomode.cli.common`. This package imports nothing, so
``python -m turbomode.cli.serve`` starts without loading the other groups.
"""
