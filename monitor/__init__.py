"""feed-monitor: watch news feeds, match watch rules, raise alerts on Redis."""

__version__ = "0.1.0"
