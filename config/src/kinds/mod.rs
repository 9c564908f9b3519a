//! One module per resource kind; each holds that kind's `spec` schema (the one source of
//! truth: YAML, stored JSON and snapshot payloads all use these types).

pub mod auth_provider;
pub mod operator_token;
pub mod prompt;
pub mod rate_limit;
pub mod resource;
pub mod rest;
pub mod secret;
pub mod tls;
pub mod upstream;
pub mod virtual_server;
