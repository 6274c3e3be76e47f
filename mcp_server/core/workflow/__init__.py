"""The research loop around runs: plans, memory, comparisons, lineage, the overview, reports and
notifications.
"""
