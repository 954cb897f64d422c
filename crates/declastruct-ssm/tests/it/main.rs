//! .what = the native transport against an in-process fake of the service and the agent (`fake_agent.rs`, with
//! `fake_ssm_http.rs` for the SDK path)
//! .why = open, data both ways in mux and basic mode, many connections, a refusing destination, a lost websocket
//! resumed with data flowing, lost and reordered messages, KMS refused, the session's ends, the close, and the
//! SDK's calls and endpoint rules

mod fake_agent;
mod fake_ssm_http;
mod measure;
mod sdk;
mod sessions;
