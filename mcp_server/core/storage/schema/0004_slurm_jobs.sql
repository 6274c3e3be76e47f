-- Schema step 4: The Slurm backend's shared job cache.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE TABLE IF NOT EXISTS slurm_jobs (
	job_id VARCHAR NOT NULL,
	run_id VARCHAR NOT NULL,
	state VARCHAR,
	reason VARCHAR NOT NULL,
	exit_code INTEGER,
	seen_at FLOAT,
	ended_seen_at FLOAT,
	missing_since FLOAT,
	missing_polls INTEGER NOT NULL,
	updated_at FLOAT NOT NULL,
	PRIMARY KEY (job_id)
);

CREATE INDEX IF NOT EXISTS ix_slurm_jobs_run_id ON slurm_jobs (run_id);
