//! The transparency log's algorithms, with no I/O and nothing of Reins's domain: RFC 8785
//! canonical JSON ([`canonical`]), RFC 6962 / RFC 9162 tree arithmetic and proofs ([`merkle`]), and
//! C2SP signed notes and checkpoints ([`note`]). The store lays out what these compute, the ledger
//! drives them, and `reins ledger verify` and audit packs check with them.

pub mod canonical;
pub mod merkle;
pub mod note;
