-- Schema step 9: pre-aggregated metric buckets (count, min, max, last per bucket of 2**shift
-- steps, per level; core.metric_buckets). The step's data part builds them for the points an
-- older release stored (migrations.STEPS: rebuild_metric_buckets), in the same transaction.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE TABLE IF NOT EXISTS metric_buckets (
	series_id INTEGER NOT NULL,
	level INTEGER NOT NULL,
	bucket INTEGER NOT NULL,
	n INTEGER NOT NULL,
	min_step INTEGER,
	min_value FLOAT,
	max_step INTEGER,
	max_value FLOAT,
	last_step INTEGER NOT NULL,
	last_value FLOAT,
	PRIMARY KEY (series_id, level, bucket)
) WITHOUT ROWID;
