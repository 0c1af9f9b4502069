-- One statement that writes a whole ledger commit: its entries, their tree nodes, the decision
-- rows and the salts, from four JSON arrays (blobs in hex, entries as their UTF-8 text), in array
-- order. A single statement is atomic on its own, so a batch of decisions is committed in one
-- round trip to the connection's thread instead of one per table plus BEGIN and COMMIT.
CREATE VIEW ledger_commit (entries, nodes, decisions, salts) AS
    SELECT NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER ledger_commit_rows INSTEAD OF INSERT ON ledger_commit
BEGIN
    INSERT INTO ledger_entries (idx, kind, entry)
        SELECT value ->> 0, value ->> 1, CAST(value ->> 2 AS BLOB) FROM json_each(NEW.entries);
    INSERT INTO ledger_nodes (pos, level, idx, hash)
        SELECT value ->> 0, value ->> 1, value ->> 2, unhex(value ->> 3) FROM json_each(NEW.nodes);
    INSERT INTO decisions (id, agent_id, on_behalf_of, action, resource_type, resource_id, decision,
                           policy_digest, evaluated_at, extra, ledger_index, leaf_hash)
        SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
               value ->> 7, value ->> 8, value ->> 9, value ->> 10, unhex(value ->> 11)
        FROM json_each(NEW.decisions);
    INSERT INTO ledger_salts (decision_id, pointer, salt)
        SELECT value ->> 0, value ->> 1, unhex(value ->> 2) FROM json_each(NEW.salts);
END;
