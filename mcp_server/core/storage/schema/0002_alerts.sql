-- Schema step 2: Alerts.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE TABLE IF NOT EXISTS alerts (
	pk INTEGER NOT NULL,
	id VARCHAR NOT NULL,
	run_id VARCHAR,
	kind VARCHAR NOT NULL,
	severity VARCHAR NOT NULL,
	message VARCHAR NOT NULL,
	choices JSON NOT NULL,
	signature VARCHAR NOT NULL,
	status VARCHAR NOT NULL,
	resolution VARCHAR,
	data JSON NOT NULL,
	created_at FLOAT NOT NULL,
	resolved_at FLOAT,
	PRIMARY KEY (pk),
	UNIQUE (id)
);

CREATE INDEX IF NOT EXISTS ix_alerts_signature ON alerts (signature);

CREATE INDEX IF NOT EXISTS ix_alerts_run_id ON alerts (run_id);

CREATE INDEX IF NOT EXISTS ix_alerts_run_status ON alerts (run_id, status);
