//! Where the backups are: `--store URL`, or etcdbrctl's `--storage-provider` flags and credential
//! conventions, resolved into one [`StoreConfig`] before anything touches the network.
//!
//! Resolution reads environment variables and credential files through [`EnvLookup`] so it can be
//! unit-tested without touching the process environment.
//!
//! * `args`: the flags as clap parses them;
//! * `resolve`: URL parsing and provider routing;
//! * `credentials`: each provider's credential files or variables;
//! * `store_config`: the resolved [`StoreConfig`];
//! * `env`, `error`: the environment lookup and [`ConfigError`].

mod args;
mod credentials;
mod env;
mod error;
mod resolve;
mod store_config;
#[cfg(test)]
mod tests;

pub use args::{DEFAULT_MEMORY_BUDGET, FetchArgs, MIN_CHUNK_SIZE, Provider, StoreArgs, parse_size};
pub use credentials::parse_go_bool;
pub use env::{EnvLookup, process_env};
pub use error::ConfigError;
pub use store_config::{AzureConfig, Backend, GcsConfig, S3Config, StoreConfig};
