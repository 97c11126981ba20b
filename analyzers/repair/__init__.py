"""Repair engine: fault localisation, candidate generation and test-validated fixes."""
