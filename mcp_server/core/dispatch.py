"""``python -m mcp_server.core.dispatch``, as launch scripts written before the core was
grouped call it: a run queued across an upgrade must still start. Moved to
``mcp_server.core.scheduling.dispatch``."""

from mcp_server.core.scheduling.dispatch import main

if __name__ == "__main__":
    main()
