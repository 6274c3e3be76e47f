-- Schema step 8: Notification targets and deliveries.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE TABLE IF NOT EXISTS notify_targets (
	id VARCHAR NOT NULL,
	label VARCHAR DEFAULT '' NOT NULL,
	cursor INTEGER DEFAULT 0 NOT NULL,
	created_at FLOAT DEFAULT (0.0) NOT NULL,
	sender_token VARCHAR,
	sender_pid INTEGER,
	sender_host VARCHAR DEFAULT '' NOT NULL,
	sender_heartbeat FLOAT,
	PRIMARY KEY (id)
);

CREATE TABLE IF NOT EXISTS notify_deliveries (
	id INTEGER NOT NULL,
	target_id VARCHAR NOT NULL,
	"key" VARCHAR NOT NULL,
	kind VARCHAR NOT NULL,
	event_id INTEGER,
	run_id VARCHAR,
	sweep_id VARCHAR,
	alert_id VARCHAR,
	state VARCHAR DEFAULT 'pending' NOT NULL,
	attempts INTEGER DEFAULT 0 NOT NULL,
	next_at FLOAT DEFAULT (0.0) NOT NULL,
	claimed_by VARCHAR,
	claim_until FLOAT,
	title VARCHAR,
	body VARCHAR,
	level VARCHAR DEFAULT 'info' NOT NULL,
	last_error VARCHAR DEFAULT '' NOT NULL,
	created_at FLOAT DEFAULT (0.0) NOT NULL,
	sent_at FLOAT,
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX IF NOT EXISTS ux_notify_deliveries_target_key ON notify_deliveries (target_id, "key");

CREATE INDEX IF NOT EXISTS ix_notify_deliveries_target_state ON notify_deliveries (target_id, state, id);

CREATE INDEX IF NOT EXISTS ix_notify_deliveries_run ON notify_deliveries (run_id);
