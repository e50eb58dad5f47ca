"""Tests of the model zoo generator."""
