-- Schema step 7: framework log files as metric sources; the printed-output parser's saved
-- state and the sidecar's duplicate and non-numeric counters; a file-owned series' exact step.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

ALTER TABLE sidecars ADD COLUMN output_state VARCHAR NOT NULL DEFAULT '';
ALTER TABLE sidecars ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sidecars ADD COLUMN non_numeric_example VARCHAR NOT NULL DEFAULT '';
ALTER TABLE metric_series ADD COLUMN exact_through INTEGER;

CREATE TABLE IF NOT EXISTS metric_files (
	run_id VARCHAR NOT NULL,
	path VARCHAR NOT NULL,
	kind VARCHAR NOT NULL,
	"offset" INTEGER DEFAULT 0 NOT NULL,
	records INTEGER DEFAULT 0 NOT NULL,
	state VARCHAR DEFAULT '' NOT NULL,
	points INTEGER DEFAULT 0 NOT NULL,
	bad INTEGER DEFAULT 0 NOT NULL,
	example VARCHAR DEFAULT '' NOT NULL,
	found_at FLOAT DEFAULT (0.0) NOT NULL,
	updated_at FLOAT DEFAULT (0.0) NOT NULL,
	PRIMARY KEY (run_id, path)
);
