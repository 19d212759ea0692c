"""Hostile input: a corpus (tests/data/hostile) and generated inputs for every door data comes in by."""
