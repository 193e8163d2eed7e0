-- The relay's tables: the same shape as the SQLite store (cloud/relay/store_sqlite.py).
-- Times are unix seconds in double precision (never `real`: 4 bytes lose seconds).
-- Public keys stay JSON text, exactly as the agent registered them.

CREATE TABLE tenants (
    tenant text PRIMARY KEY,
    token_hash text NOT NULL UNIQUE,
    created_at double precision NOT NULL
);

CREATE TABLE portal_keys (
    tenant text NOT NULL REFERENCES tenants (tenant),
    kid text NOT NULL,
    public_key text NOT NULL,
    not_before double precision,
    not_after double precision,
    created_at double precision NOT NULL,
    PRIMARY KEY (tenant, kid)
);

CREATE TABLE enrollment_codes (
    code_hash text PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants (tenant),
    agent_group text NOT NULL,
    expires_at double precision NOT NULL,
    created_at double precision NOT NULL,
    used_at double precision,
    agent_id text
);

CREATE TABLE agents (
    agent_id text PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants (tenant),
    agent_group text NOT NULL,
    name text NOT NULL,
    public_keys text NOT NULL,
    sign_key text NOT NULL,
    enrolled_at double precision NOT NULL,
    last_seen double precision,
    status text,
    removed_at double precision
);
CREATE INDEX agents_by_group ON agents (tenant, agent_group);

CREATE TABLE requests (
    tenant text NOT NULL,
    request_id text NOT NULL,
    agent_group text NOT NULL,
    envelope bytea NOT NULL,
    exp double precision NOT NULL,
    created_at double precision NOT NULL,
    state text NOT NULL CHECK (state IN ('queued', 'leased', 'done')),
    lease_id text UNIQUE,
    leased_by text,
    lease_expires_at double precision,
    attempts integer NOT NULL DEFAULT 0,
    result bytea,
    completed_at double precision,
    PRIMARY KEY (tenant, request_id)
);
-- The lease query walks this index in queue order, skipping rows other relays hold;
-- answered requests (most rows, until pruned) are not in it.
CREATE INDEX requests_pending ON requests (tenant, agent_group, created_at, request_id)
    WHERE state <> 'done';
CREATE INDEX requests_done ON requests (completed_at) WHERE state = 'done';
CREATE INDEX requests_by_agent ON requests (leased_by) WHERE state = 'leased';
