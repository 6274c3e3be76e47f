-- Schema step 6: Metric series and points; sidecars and their read offsets.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE TABLE IF NOT EXISTS metric_series (
	id INTEGER NOT NULL,
	run_id VARCHAR NOT NULL,
	"key" VARCHAR NOT NULL,
	source VARCHAR DEFAULT 'jsonl' NOT NULL,
	count INTEGER DEFAULT 0 NOT NULL,
	nonfinite INTEGER DEFAULT 0 NOT NULL,
	first_nonfinite_step INTEGER,
	first_step INTEGER,
	last_step INTEGER,
	last_value FLOAT,
	min_value FLOAT,
	min_step INTEGER,
	max_value FLOAT,
	max_step INTEGER,
	updated_at FLOAT DEFAULT (0.0) NOT NULL,
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX IF NOT EXISTS ux_metric_series_run_key ON metric_series (run_id, "key");

CREATE TABLE IF NOT EXISTS metric_points (
	id INTEGER NOT NULL,
	series_id INTEGER NOT NULL,
	step INTEGER NOT NULL,
	value FLOAT,
	ts FLOAT NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX IF NOT EXISTS ix_metric_points_series_step ON metric_points (series_id, step);

CREATE TABLE IF NOT EXISTS sidecars (
	run_id VARCHAR NOT NULL,
	pid INTEGER,
	host VARCHAR DEFAULT '' NOT NULL,
	claimed_at FLOAT DEFAULT (0.0) NOT NULL,
	started_at FLOAT,
	heartbeat_at FLOAT,
	exited_at FLOAT,
	exit_reason VARCHAR DEFAULT '' NOT NULL,
	starts INTEGER DEFAULT 0 NOT NULL,
	metrics_offset INTEGER DEFAULT 0 NOT NULL,
	metrics_records INTEGER DEFAULT 0 NOT NULL,
	metrics_skipping BOOLEAN DEFAULT 0 NOT NULL,
	bad_lines INTEGER DEFAULT 0 NOT NULL,
	non_numeric INTEGER DEFAULT 0 NOT NULL,
	huge_lines INTEGER DEFAULT 0 NOT NULL,
	partial_lines INTEGER DEFAULT 0 NOT NULL,
	output_offset INTEGER DEFAULT 0 NOT NULL,
	output_records INTEGER DEFAULT 0 NOT NULL,
	output_skipping BOOLEAN DEFAULT 0 NOT NULL,
	log_parsing BOOLEAN DEFAULT 1 NOT NULL,
	points INTEGER DEFAULT 0 NOT NULL,
	last_data_at FLOAT,
	judge_calls INTEGER DEFAULT 0 NOT NULL,
	judge_errors INTEGER DEFAULT 0 NOT NULL,
	judge_prompt_tokens INTEGER DEFAULT 0 NOT NULL,
	judge_completion_tokens INTEGER DEFAULT 0 NOT NULL,
	judge_cost_usd FLOAT DEFAULT (0.0) NOT NULL,
	judge_last_at FLOAT,
	PRIMARY KEY (run_id)
);

CREATE INDEX IF NOT EXISTS ix_sidecars_unfinished ON sidecars (run_id) WHERE exited_at IS NULL;
