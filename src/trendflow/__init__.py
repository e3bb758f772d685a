"""trendflow: an open trend-ingestion pipeline."""

__version__ = "0.1.0"
