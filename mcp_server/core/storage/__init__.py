"""The store: SQLite opened one way, the schema and its numbered steps, plain-SQL reads and writes,
health and repair.
"""
