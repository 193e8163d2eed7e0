-- Write permits (cloud/relay/store.py explains them): every request gets a submit
-- sequence number from one sequence all replicas share ("newer" = accepted later by
-- the relay, never a clock), and carries the permit granted for it: the user it
-- writes to, whether it is ordered (sets a password), the lease and agent holding
-- the permit, until when (the holder's lease expiry), when it closed, and which lease
-- posted the stored result.

CREATE SEQUENCE request_seq AS bigint;

ALTER TABLE requests
    ADD COLUMN seq bigint NOT NULL DEFAULT nextval('request_seq'),
    ADD COLUMN user_key text,
    ADD COLUMN ordered boolean,
    ADD COLUMN permit_lease text,
    ADD COLUMN permit_agent text,
    ADD COLUMN permit_until double precision,
    ADD COLUMN permit_closed_at double precision,
    ADD COLUMN result_lease text;

ALTER SEQUENCE request_seq OWNED BY requests.seq;

-- Permit decisions look up the other requests of the same user.
CREATE INDEX requests_by_user ON requests (tenant, user_key) WHERE user_key IS NOT NULL;
-- A result posted by the permit holder after its lease was lost finds the row by it.
CREATE INDEX requests_by_permit ON requests (permit_lease) WHERE permit_lease IS NOT NULL;
