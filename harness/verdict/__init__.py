"""Measured against predicted: the model run on a result's before-the-release records, and
one judge for the tests and the CLI."""
