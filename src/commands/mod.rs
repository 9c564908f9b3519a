//! One module per subcommand.

pub mod bridge;
pub mod certs;
pub mod client;
pub mod connect;
pub mod context;
pub mod controlplane;
pub mod dataplane;
pub mod hash_key;
pub mod operator_token;
pub mod preview;
pub mod token;
pub mod up;
pub mod upstreams;
pub mod validate;
pub mod version;
