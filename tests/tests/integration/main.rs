//! Integration tests: the real handlers against DynamoDB Local.
//! Test names start with the SPEC behaviour they prove.

mod block_api;
mod consent;
mod identity;
pub(crate) mod lifecycle;
mod openapi;
mod rules;
mod scale;
mod send_proxy;
mod template;
mod wa_blocked;
mod webhook_ingress;
