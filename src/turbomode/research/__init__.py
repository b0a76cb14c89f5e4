"""Research tools: measure any score (a model's, a feature's, a baseline rule's) the same way.

``factor`` holds the pure, vectorized measures (IC, deciles, long/short); ``tearsheet`` puts
them together into a report a person can read; ``scores`` holds the baseline rules.
"""
