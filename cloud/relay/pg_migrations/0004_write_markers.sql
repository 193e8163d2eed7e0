-- Write markers (cloud/relay/store.py, IN_DOUBT): with each permit the agent sends a
-- hash of the server it read the user from and the entry's change stamp there. A
-- redelivery whose marker equals the holder's proves the holder never wrote, and
-- takes the permit over instead of answering in_doubt.

ALTER TABLE requests ADD COLUMN permit_marker text;
