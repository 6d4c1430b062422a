//! Meta's WhatsApp Cloud API: webhook signatures and payloads.

pub mod signature;
pub mod webhook;
