"""The store's schema version, known without loading the ORM.

A new server answers its first list calls in plain SQL before the store module (and
SQLAlchemy with it) is imported (``App.read_light``); it must still refuse a store written
by a newer research-mcp. ``core.store`` checks at import that this is ``len(MIGRATIONS)``:
a branch that appends a migration bumps it too.
"""

VERSION = 11
