"""Simulated devices and vehicles, so a fresh stack shows live data and tests have real peers."""
