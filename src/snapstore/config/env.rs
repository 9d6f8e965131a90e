//! The environment, read through one injectable lookup so resolution and credential reading
//! can be unit-tested without touching the process environment.

/// Reads an environment variable; injectable for tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
