"""TurboMode: batch ML platform that turns daily S&P 500 market data into risk-managed signals."""

__version__ = "0.1.0"
