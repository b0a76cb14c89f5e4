"""``python -m turbomode``: the ``turbomode`` command."""

from turbomode.cli.main import app

app(prog_name="turbomode")
