//! The signed append-only ledger: RFC 6962 Merkle tree over canonical entries, C2SP checkpoints.

pub mod merkle;
pub mod note;
