-- Tree nodes keyed by post-order position (`NodeId::position`): the order appends create them
-- in, so an append adds rows at the end of one b-tree. Keyed by (level, idx), every append wrote
-- the last page of each level's run, a 4 KiB WAL frame per level. level and idx stay as columns.
CREATE TABLE ledger_nodes_by_position (
    pos    INTEGER PRIMARY KEY NOT NULL,
    level  INTEGER NOT NULL,
    idx    BIGINT NOT NULL,
    hash   BLOB NOT NULL
);

-- position = (k << (level + 1)) - popcount(k) - tz(k) - 1 with k = idx + 1, where
-- tz(k) = popcount((k & -k) - 1); SQLite has no popcount, hence the sums of bits (k < 2^48).
INSERT INTO ledger_nodes_by_position (pos, level, idx, hash)
    SELECT (k << (level + 1)) - (((k >> 0) & 1) + ((k >> 1) & 1) + ((k >> 2) & 1) + ((k >> 3) & 1) + ((k >> 4) & 1) + ((k >> 5) & 1) + ((k >> 6) & 1) + ((k >> 7) & 1) + ((k >> 8) & 1) + ((k >> 9) & 1) + ((k >> 10) & 1) + ((k >> 11) & 1) + ((k >> 12) & 1) + ((k >> 13) & 1) + ((k >> 14) & 1) + ((k >> 15) & 1) + ((k >> 16) & 1) + ((k >> 17) & 1) + ((k >> 18) & 1) + ((k >> 19) & 1) + ((k >> 20) & 1) + ((k >> 21) & 1) + ((k >> 22) & 1) + ((k >> 23) & 1) + ((k >> 24) & 1) + ((k >> 25) & 1) + ((k >> 26) & 1) + ((k >> 27) & 1) + ((k >> 28) & 1) + ((k >> 29) & 1) + ((k >> 30) & 1) + ((k >> 31) & 1) + ((k >> 32) & 1) + ((k >> 33) & 1) + ((k >> 34) & 1) + ((k >> 35) & 1) + ((k >> 36) & 1) + ((k >> 37) & 1) + ((k >> 38) & 1) + ((k >> 39) & 1) + ((k >> 40) & 1) + ((k >> 41) & 1) + ((k >> 42) & 1) + ((k >> 43) & 1) + ((k >> 44) & 1) + ((k >> 45) & 1) + ((k >> 46) & 1) + ((k >> 47) & 1)) - (((low >> 0) & 1) + ((low >> 1) & 1) + ((low >> 2) & 1) + ((low >> 3) & 1) + ((low >> 4) & 1) + ((low >> 5) & 1) + ((low >> 6) & 1) + ((low >> 7) & 1) + ((low >> 8) & 1) + ((low >> 9) & 1) + ((low >> 10) & 1) + ((low >> 11) & 1) + ((low >> 12) & 1) + ((low >> 13) & 1) + ((low >> 14) & 1) + ((low >> 15) & 1) + ((low >> 16) & 1) + ((low >> 17) & 1) + ((low >> 18) & 1) + ((low >> 19) & 1) + ((low >> 20) & 1) + ((low >> 21) & 1) + ((low >> 22) & 1) + ((low >> 23) & 1) + ((low >> 24) & 1) + ((low >> 25) & 1) + ((low >> 26) & 1) + ((low >> 27) & 1) + ((low >> 28) & 1) + ((low >> 29) & 1) + ((low >> 30) & 1) + ((low >> 31) & 1) + ((low >> 32) & 1) + ((low >> 33) & 1) + ((low >> 34) & 1) + ((low >> 35) & 1) + ((low >> 36) & 1) + ((low >> 37) & 1) + ((low >> 38) & 1) + ((low >> 39) & 1) + ((low >> 40) & 1) + ((low >> 41) & 1) + ((low >> 42) & 1) + ((low >> 43) & 1) + ((low >> 44) & 1) + ((low >> 45) & 1) + ((low >> 46) & 1) + ((low >> 47) & 1)) - 1, level, idx, hash
    FROM (SELECT level, idx, hash, idx + 1 AS k, ((idx + 1) & -(idx + 1)) - 1 AS low FROM ledger_nodes)
    ORDER BY 1;

DROP TABLE ledger_nodes;

ALTER TABLE ledger_nodes_by_position RENAME TO ledger_nodes;
