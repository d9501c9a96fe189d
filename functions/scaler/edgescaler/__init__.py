"""edgescaler: add ENS edge workers to ACK Edge clusters when Prometheus load says so."""

__version__ = "0.1.0"
