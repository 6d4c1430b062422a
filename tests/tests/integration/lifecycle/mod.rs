//! The life of a block after it is made: expiry (B13, B44), the change
//! events that tell the CRM (B14), and the platform block at Meta (B15).

mod events;
pub(crate) use events::audit_records;
pub(crate) mod expiry;
mod platform;
