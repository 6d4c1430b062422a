//! Meta's WhatsApp Cloud API: webhook signatures and payloads, and the
//! Graph API messages endpoint.

pub mod graph;
pub mod signature;
pub mod webhook;
