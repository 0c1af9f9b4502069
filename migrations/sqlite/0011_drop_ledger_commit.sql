-- The ledger's writer now runs SQLite on a thread of its own and inserts rows with prepared
-- statements; the one-statement JSON commit of 0010 (a view and its trigger) is no longer used.
DROP TRIGGER IF EXISTS ledger_commit_rows;
DROP VIEW IF EXISTS ledger_commit;
