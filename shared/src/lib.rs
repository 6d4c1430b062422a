//! The shared crate of wa-blocklist: domain rules (numbers, model, policy),
//! the DynamoDB store, HTTP plumbing (auth, errors), configuration, and
//! what reaches logs and metrics.

pub mod autoblock;
pub mod config;
pub mod http;
pub mod identity;
pub mod import;
pub mod inbound;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod number;
pub mod outbound;
pub mod platform;
pub mod policy;
pub mod redact;
pub mod service;
pub mod store;
pub mod stream;

pub use identity::{Subject, UserId};
pub use number::Number;
