"""Signals: the rules that make the signals of a scan and the store that keeps them (the
record itself is :mod:`turbomode.records.signals`)."""
