"""Record types several layers share: plain dataclasses and literals with no behaviour beyond
their fields, importing nothing from ``turbomode`` above the base modules.

``records.signals`` holds the :class:`Signal` a scan produces (read by the risk rules, the store,
the backtester and the wallet); ``records.positions`` the :class:`Position` and
:class:`PositionEvent` position management writes and the store keeps.
"""
