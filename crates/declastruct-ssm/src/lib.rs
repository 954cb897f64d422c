//! .what = a native AWS Session Manager port-forwarding client: StartSession through `aws-sdk-ssm`, the data
//! channel over a websocket (tokio-tungstenite with the SDK's rustls stack), the handshake, sequencing,
//! acknowledgements and retransmission, smux v1 (mux mode) and the basic mode, ResumeSession on a lost websocket
//! and TerminateSession on close
//! .why = a tunnel without the AWS CLI (Python, 45–71 MB) and the session-manager-plugin (Go, ~17 MB): one task in
//! the supervisor's process, faster uploads, `localhost` on both address families (issue 24)
//!
//! ```no_run
//! # async fn example(config: aws_types::SdkConfig) -> Result<(), declastruct_ssm::SsmError> {
//! use declastruct_ssm::{NativeOptions, NativeSession, PortForwardRequest, localhost_addresses};
//! let request = PortForwardRequest {
//!     target: "i-0abc1234".into(),
//!     remote_host: Some("db.cluster-xyz.eu-west-1.rds.amazonaws.com".into()),
//!     remote_port: 5432,
//!     local_port: 7775,
//!     local_addresses: localhost_addresses(),
//! };
//! let mut session = NativeSession::start(&config, request, NativeOptions::default()).await?;
//! let closer = session.closer(); // e.g. for a SIGTERM handler: closer.close()
//! # drop(closer);
//! let end = session.serve().await?; // until closed, closed by AWS, or timed out
//! # let _ = end;
//! # Ok(()) }
//! ```
//!
//! Modules, from the wire up: [`message`] (the binary message), [`payloads`] (its JSON payloads), [`channel`]
//! (reliability without I/O), [`smux`] (framing), [`version`] (agent-version rules), [`api`] (the SSM calls),
//! `session` (the task that runs it all).
#![deny(missing_docs)]
// a library never writes to the terminal: only the binary renders
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod api;
pub mod channel;
mod error;
mod local;
pub mod message;
pub mod payloads;
mod session;
pub mod smux;
pub mod version;
mod websocket;

pub use api::{ResumedSession, SdkSessionApi, SessionApi, StartSessionInput, StartedSession};
pub use channel::Window;
pub use error::SsmError;
pub use local::localhost_addresses;
pub use session::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE_PAYLOAD, NativeOptions, NativeSession,
    PortForwardRequest, SessionCloser, SessionEnd, SessionEvent,
};
pub use version::ForwardingMode;
pub use websocket::open_data_channel;
