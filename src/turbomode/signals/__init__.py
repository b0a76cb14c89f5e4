"""Signals: the records a scan produces, the rules that make them and the store that keeps them."""
