-- Schema step 11: adaptive sweeps. Each sweep's search settings and budget (sweeps.search);
-- trials (numbers claimed uniquely per sweep) and pruner verdicts; a run's children found
-- without a scan (lineage).
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

ALTER TABLE sweeps ADD COLUMN search JSON DEFAULT '{}' NOT NULL;

CREATE TABLE IF NOT EXISTS sweep_trials (
	run_id VARCHAR NOT NULL,
	sweep_id VARCHAR NOT NULL,
	number INTEGER,
	pruned VARCHAR,
	pruned_step INTEGER,
	pruned_value FLOAT,
	created_at FLOAT NOT NULL,
	updated_at FLOAT NOT NULL,
	PRIMARY KEY (run_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_sweep_trials_number ON sweep_trials (sweep_id, number);
CREATE INDEX IF NOT EXISTS ix_sweep_trials_sweep_id ON sweep_trials (sweep_id);
CREATE INDEX IF NOT EXISTS ix_runs_parent_run_id ON runs (parent_run_id);
