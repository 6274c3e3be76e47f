"""``python -m mcp_server.core.admit``, as launch scripts written before the core was
grouped call it: a run queued across an upgrade must still start. Moved to
``mcp_server.core.scheduling.gpu_attempt``."""

from mcp_server.core.scheduling.gpu_attempt import main

if __name__ == "__main__":
    main()
