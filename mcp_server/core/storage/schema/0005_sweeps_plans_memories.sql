-- Schema step 5: Sweeps, plans and memory rules.
-- Frozen: never edit a released step; add a new one (see mcp_server/core/migrations.py).

CREATE TABLE IF NOT EXISTS sweeps (
	pk INTEGER NOT NULL,
	id VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	goal VARCHAR NOT NULL,
	base_command VARCHAR,
	parameters JSON NOT NULL,
	method VARCHAR NOT NULL,
	max_runs INTEGER,
	seed INTEGER,
	parallel INTEGER,
	gpus_per_run INTEGER NOT NULL,
	backend VARCHAR NOT NULL,
	workdir VARCHAR,
	created_at FLOAT NOT NULL,
	updated_at FLOAT NOT NULL,
	PRIMARY KEY (pk),
	UNIQUE (id)
);

CREATE INDEX IF NOT EXISTS ix_sweeps_name ON sweeps (name);

CREATE TABLE IF NOT EXISTS plans (
	pk INTEGER NOT NULL,
	id VARCHAR NOT NULL,
	title VARCHAR NOT NULL,
	goal VARCHAR NOT NULL,
	raw_markdown VARCHAR NOT NULL,
	status VARCHAR NOT NULL,
	session_id VARCHAR,
	sweep_ids JSON NOT NULL,
	run_ids JSON NOT NULL,
	created_at FLOAT NOT NULL,
	updated_at FLOAT NOT NULL,
	PRIMARY KEY (pk),
	UNIQUE (id)
);

CREATE INDEX IF NOT EXISTS ix_plans_status ON plans (status);

CREATE TABLE IF NOT EXISTS memories (
	pk INTEGER NOT NULL,
	id VARCHAR NOT NULL,
	title VARCHAR NOT NULL,
	content VARCHAR NOT NULL,
	tags JSON NOT NULL,
	source VARCHAR NOT NULL,
	active BOOLEAN NOT NULL,
	created_at FLOAT NOT NULL,
	updated_at FLOAT NOT NULL,
	PRIMARY KEY (pk),
	UNIQUE (id)
);

CREATE INDEX IF NOT EXISTS ix_memories_active ON memories (active);
