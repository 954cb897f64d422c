//! .what = the native transport against an in-process fake of the service and the agent (`fake_agent.rs`)
//! .why = open, data both ways in mux and basic mode, many connections, a refusing destination, a lost websocket
//! resumed with data flowing, lost and reordered messages, KMS refused, the session's ends, and the close

mod fake_agent;
mod sessions;
