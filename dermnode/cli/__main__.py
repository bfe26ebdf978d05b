"""``python -m dermnode.cli``: the same as the ``dermnode`` command."""

from dermnode.cli import main

raise SystemExit(main())
