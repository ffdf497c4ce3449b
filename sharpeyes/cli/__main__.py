"""``python -m sharpeyes.cli``: the same as the ``sharpeyes`` command."""

from sharpeyes.cli.main import main

main()
