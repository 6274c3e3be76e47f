"""Reports a researcher can hand to a human: Markdown with a runs table, the best run and how
sure that is, curves as images beside it, alerts and failures with their causes, and the
memory rules in force. ``service.write_report`` is the entry point (the ``write_report`` tool
and ``research-mcp report``); everything is read through the core services the tools use."""
