-- The portal's tables: the same shape as the SQLite store (cloud/portal/store.py).
-- Every name starts with portal_ so the portal can share the relay's database
-- (the relay's own tables, cloud/relay/pg_migrations, never start with portal_
-- except its portal_keys, which this file does not use).
-- Times are unix seconds in double precision (never `real`: 4 bytes lose seconds).

CREATE TABLE portal_sessions (
    sid text PRIMARY KEY,
    data text NOT NULL,
    expires double precision NOT NULL
);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires);

CREATE TABLE portal_methods (
    user_key text NOT NULL,
    kind text NOT NULL,
    data text NOT NULL,
    confirmed_at double precision NOT NULL,
    PRIMARY KEY (user_key, kind)
);

CREATE TABLE portal_codes (
    key text PRIMARY KEY,
    code_hash text NOT NULL,
    expires double precision NOT NULL,
    tries integer NOT NULL
);
