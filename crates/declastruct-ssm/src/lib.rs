//! .what = a native AWS Session Manager port-forwarding client
//! .why = no AWS CLI, no session-manager-plugin (issue 24)
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod channel;
pub mod message;
pub mod payloads;
pub mod smux;
pub mod version;
