//! One module per subcommand.

pub mod client;
pub mod controlplane;
pub mod validate;
pub mod version;
