"""`python -m scraperd` is the same as the `scraperd` console script."""
from scraperd.cli import main

raise SystemExit(main())
