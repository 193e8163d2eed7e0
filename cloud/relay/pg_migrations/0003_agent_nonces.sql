-- Single-use signed agent calls: every accepted (agent, nonce) is recorded once, on
-- whichever relay replica took the call, so a replay to any replica is refused.
-- Rows older than the signed-call clock window are pruned (it refuses them anyway).

CREATE TABLE agent_nonces (
    agent_id text NOT NULL,
    nonce text NOT NULL,
    ts double precision NOT NULL,
    PRIMARY KEY (agent_id, nonce)
);
CREATE INDEX agent_nonces_by_ts ON agent_nonces (ts);
