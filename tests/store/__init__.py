"""Tests of turbomode.store."""
