"""`python -m scraperd` is the same as the `scraperd` console script."""
from scraperd.entry import main

raise SystemExit(main())
