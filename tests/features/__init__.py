"""Tests of turbomode.features."""
