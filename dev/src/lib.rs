//! The local stack: what `scripts/dev` runs, and what the integration tests
//! share with it so that both drive the handlers the same way.
//!
//! - [`tables`]: create the DynamoDB tables declared in `template.yaml`.
//! - [`apigw`]: turn an HTTP request into the API Gateway (HTTP API, payload
//!   2.0) event the Lambda functions receive.
//! - [`server`]: the functions' handlers behind the routes of
//!   `template.yaml`, plus the Lambda Invoke API.
//! - [`sandbox`]: a Graph API stand-in for sends when no real Graph is set.
//! - [`poller`]: reads DynamoDB Local's streams and invokes `wa-blocked`
//!   and `change-events` as Lambda's event source mappings would.
//! - [`schedule`]: runs `block-expiry`'s sweep every minute, as the
//!   template's schedule does.
//! - [`tokens`]: HS256 tokens for the local API.

pub mod apigw;
pub mod poller;
pub mod sandbox;
pub mod schedule;
pub mod server;
pub mod tables;
pub mod tokens;
