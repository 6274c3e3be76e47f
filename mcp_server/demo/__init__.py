"""A tiny CPU training script shipped with the package for ``research-mcp demo``."""
