"""The run's metric sources, one module per kind; each reads from saved offsets into a Batch.

- ``jsonl``: metrics.jsonl (``$RESEARCH_METRICS_FILE``), what the job logs on purpose.
- ``output``: output.log, what the job prints (parsed while metrics.jsonl is empty).
- ``files``: framework log files found under the run's workdir (``tfevents``, ``csvlog``,
  ``trainer_state``), read incrementally like the two above.
"""
