//! The life of a block after it is made: expiry (B13, B44) and the change
//! events that tell the CRM (B14).

mod events;
pub(crate) mod expiry;
