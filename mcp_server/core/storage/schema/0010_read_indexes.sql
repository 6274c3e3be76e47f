-- Schema step 10: indexes for what run queries filter on: open alerts newest first, a sweep's
-- runs by status, and the runs a reconcile looks at (core.watched.CAN_CHANGE as it was then;
-- the planner uses a partial index only where the query's text matches its WHERE).
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE INDEX IF NOT EXISTS ix_alerts_status_pk ON alerts (status, pk);
CREATE INDEX IF NOT EXISTS ix_runs_sweep_status ON runs (sweep_id, status, launched_at);
CREATE INDEX IF NOT EXISTS ix_runs_can_change ON runs (pk)
	WHERE (status IN ('launching', 'queued', 'running') OR (status = 'lost' AND backend != 'local'));
