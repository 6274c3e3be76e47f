-- Schema step 3: The cluster's last detection; the local queue and GPU leases.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE TABLE IF NOT EXISTS cluster_state (
	"key" VARCHAR NOT NULL,
	type VARCHAR NOT NULL,
	detected_type VARCHAR NOT NULL,
	preferred_type VARCHAR,
	status VARCHAR NOT NULL,
	detected_at FLOAT NOT NULL,
	data JSON NOT NULL,
	PRIMARY KEY ("key")
);

CREATE TABLE IF NOT EXISTS run_queue (
	seq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	run_id VARCHAR NOT NULL,
	pool VARCHAR NOT NULL,
	gpus INTEGER NOT NULL,
	enqueued_at FLOAT NOT NULL,
	waiting_since FLOAT NOT NULL,
	admitted_at FLOAT,
	not_before FLOAT,
	contentions INTEGER NOT NULL,
	output_offset INTEGER NOT NULL,
	UNIQUE (run_id)
);

CREATE TABLE IF NOT EXISTS gpu_leases (
	gpu_uuid VARCHAR NOT NULL,
	gpu_index INTEGER NOT NULL,
	run_id VARCHAR NOT NULL,
	leased_at FLOAT NOT NULL,
	PRIMARY KEY (gpu_uuid)
);

CREATE INDEX IF NOT EXISTS ix_gpu_leases_run_id ON gpu_leases (run_id);
