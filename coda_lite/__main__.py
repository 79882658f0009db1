"""``python -m coda_lite`` is the ``coda-lite`` command."""

from coda_lite.cli import main

raise SystemExit(main())
