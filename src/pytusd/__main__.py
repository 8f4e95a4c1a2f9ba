"""``python -m pytusd``: the same as the ``pytusd`` command."""

from pytusd.cli import main

main()
