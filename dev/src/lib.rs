//! The local stack: what `scripts/dev` runs, and what the integration tests
//! share with it so that both drive the handlers the same way.
//!
//! - [`tables`]: create the DynamoDB tables declared in `template.yaml`.
//! - [`apigw`]: turn an HTTP request into the API Gateway (HTTP API, payload
//!   2.0) event the Lambda functions receive.
//! - [`tokens`]: HS256 tokens for the local API.

pub mod apigw;
pub mod tables;
pub mod tokens;
