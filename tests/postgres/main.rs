//! Reins on PostgreSQL: the conformance suite both backends pass, and replicas sharing one
//! database while they crash, race and lose the database.
//!
//! Runs against the server named by `REINS_TEST_DATABASE_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432`); each test creates and drops its own database. Without
//! the variable every test prints that it did not run (and fails under `CI`).

mod conformance;
mod db;
mod replica;
mod replicas;
