-- Console sign-in links used (each once; its ledger entry is `console_signed_in`) and sessions
-- signed out (their cookies are refused; `console_signed_out`).
CREATE TABLE console_links (
    link     TEXT PRIMARY KEY NOT NULL,
    used_at  TEXT NOT NULL
);
CREATE TABLE console_sign_outs (
    session  TEXT PRIMARY KEY NOT NULL,
    at       TEXT NOT NULL
);
