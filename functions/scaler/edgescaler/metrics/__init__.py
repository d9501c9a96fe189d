"""Metric sources: where readings come from (Prometheus, alarm values carried by the trigger)."""
