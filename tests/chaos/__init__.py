"""Fault injection under sequence-numbered load (marker chaos; make chaos for the full size)."""
