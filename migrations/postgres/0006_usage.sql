-- Usage that policies read (src/usage): one row per counter key, locked FOR UPDATE while a
-- decision reads the key's counts, is evaluated and is counted, so replicas never both allow
-- the last call under a limit; and the counts in buckets: `size` 1000 (seconds, for the minute
-- window), 60000 (minutes, for the hour and the day) or 0 (a session's running total).
CREATE TABLE usage_keys (
    key TEXT PRIMARY KEY
);
CREATE TABLE usage_buckets (
    key      TEXT   NOT NULL,
    size     BIGINT NOT NULL,
    bucket   BIGINT NOT NULL,
    calls    BIGINT NOT NULL,
    amount   BIGINT NOT NULL,
    last_ms  BIGINT NOT NULL,
    PRIMARY KEY (key, size, bucket)
);
