"""``python -m coda_lite`` is the ``coda-lite`` command."""

from coda_lite.service.cli import main

raise SystemExit(main())
