//! The life of a block after it is made: expiry (B13, B44), the change
//! events that tell the CRM (B14), the platform block at Meta (B15), and
//! its periodic review (B16).

mod events;
pub(crate) use events::audit_records;
pub(crate) mod expiry;
mod platform;
mod review;
