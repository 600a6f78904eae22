"""scraperd: supervised daemons that scrape DCS slow-control tables into a DBI conditions database."""

__version__ = "0.1.0"
