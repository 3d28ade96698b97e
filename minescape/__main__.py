"""``python -m minescape``: the same command line as the ``minescape`` script (for a virtual environment whose
``bin`` is not on PATH, or a notebook's ``!python -m minescape ...``)."""
import sys

from minescape.cli.app import app

if __name__ == "__main__":
    sys.exit(app(prog_name="minescape"))
