-- Compliance reads low-volume entry kinds (kill switches, approvals, attestations, policy loads,
-- self-checks) straight from the ledger, so that every piece of evidence is a ledger index.
CREATE INDEX ledger_entries_by_kind ON ledger_entries (kind, idx);

-- The text of every policy pack that was ever loaded, by digest: the ledger records the digest,
-- and an audit pack must show the policies behind it. Never deleted.
CREATE TABLE policy_texts (
    digest      TEXT PRIMARY KEY NOT NULL,
    files       TEXT NOT NULL,
    schema_text TEXT NOT NULL,
    first_seen  TEXT NOT NULL
);
