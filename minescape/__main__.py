"""``python -m minescape``: the same command line as the ``minescape`` script (for a virtual environment whose
``bin`` is not on PATH, or a notebook's ``!python -m minescape ...``)."""
from minescape.cli.app import app
from minescape.cli.common import run_main

if __name__ == "__main__":
    run_main(app, prog_name="minescape")
