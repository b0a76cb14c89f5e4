"""Tests of turbomode.signals."""
