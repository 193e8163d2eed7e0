-- Permit reservations (wire/permits.py, RECHECK): when another write to the user may
-- have landed after this lease began, the permit is reserved for the lease (exclusive,
-- not a licence to write) until the agent has read the entry again and confirmed with
-- a fresh write marker. `leased_at` is when the current lease began, by the relay's
-- clock; `permit_reserved` marks a permit that never licensed a write.

ALTER TABLE requests
    ADD COLUMN leased_at double precision,
    ADD COLUMN permit_reserved boolean NOT NULL DEFAULT false;
