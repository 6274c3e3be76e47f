-- Schema step 1: Runs and the event feed.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE TABLE IF NOT EXISTS runs (
	pk INTEGER NOT NULL,
	id VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	command VARCHAR NOT NULL,
	workdir VARCHAR NOT NULL,
	status VARCHAR NOT NULL,
	status_reason VARCHAR NOT NULL,
	error VARCHAR,
	exit_code INTEGER,
	backend VARCHAR NOT NULL,
	backend_ref VARCHAR,
	sweep_id VARCHAR,
	parent_run_id VARCHAR,
	gpus INTEGER NOT NULL,
	params JSON NOT NULL,
	env_keys JSON NOT NULL,
	options JSON NOT NULL,
	created_at FLOAT NOT NULL,
	updated_at FLOAT NOT NULL,
	queued_at FLOAT,
	launched_at FLOAT,
	started_at FLOAT,
	ended_at FLOAT,
	stop_requested_at FLOAT,
	PRIMARY KEY (pk),
	UNIQUE (id)
);

CREATE INDEX IF NOT EXISTS ix_runs_sweep_id ON runs (sweep_id);

CREATE INDEX IF NOT EXISTS ix_runs_status_pk ON runs (status, pk);

CREATE INDEX IF NOT EXISTS ix_runs_name ON runs (name);

CREATE TABLE IF NOT EXISTS events (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	ts FLOAT NOT NULL,
	kind VARCHAR NOT NULL,
	run_id VARCHAR,
	data JSON NOT NULL
);

CREATE INDEX IF NOT EXISTS ix_events_kind ON events (kind);

CREATE INDEX IF NOT EXISTS ix_events_run_id ON events (run_id);
