"""A run's life: inputs checked, files staged, the launch script, provenance, status decisions,
endings, logs and its monitor process.
"""
