//! .what = the agent-version rules that choose how to forward
//! .why = the plugin picks mux or basic mode, and smux keep-alive, by comparing the handshake's AgentVersion with
//! fixed versions (`src/config/config.go`, `src/version/versionvalidator.go`, `src/version/versionutil.go`)

/// .what = the last agent version without TCP multiplexing
/// .why = config.go `TCPMultiplexingSupportedAfterThisAgentVersion`: mux only for agents newer than this
pub const TCP_MULTIPLEXING_AFTER: &str = "3.0.196.0";

/// .what = the last agent version that wants smux keep-alive
/// .why = config.go `TCPMultiplexingWithSmuxKeepAliveDisabledAfterThisAgentVersion`: "Disable smux KeepAlive or else
/// it breaks Session Manager idle timeout" (muxportforwarding.go `initialize`)
pub const SMUX_KEEP_ALIVE_DISABLED_AFTER: &str = "3.1.1511.0";

/// .what = the last agent version without the TerminateSession flag
/// .why = config.go `TerminateSessionFlagSupportedAfterThisAgentVersion`: older agents are ended through the API
/// (basicportforwarding.go `handleControlSignals`)
pub const TERMINATE_SESSION_FLAG_AFTER: &str = "2.3.722.0";

/// .what = the client version this client announces, in the open message and the handshake response
/// .why = the agent chooses mux for client versions from 1.1.70 and turns its own smux keep-alive off for versions
/// after 1.2.331.0 (agent `agent/session/plugins/port/port.go`); this client behaves as the plugin release
/// 1.2.650.0, whose source it follows
pub const CLIENT_VERSION: &str = "1.2.650.0";

/// .what = whether `agent_version` is strictly newer than `reference`
/// .why = versionvalidator.go `isAgentVersionGreaterThanSupportedVersion`: dot-separated numbers compared in
/// order; a version that does not parse, or has a different number of parts, is not newer
pub fn is_newer_than(agent_version: &str, reference: &str) -> bool {
    let parse = |text: &str| -> Option<Vec<u64>> {
        if text.is_empty() {
            return None;
        }
        text.split('.')
            .map(|part| part.parse::<u64>().ok())
            .collect()
    };
    let (Some(agent), Some(reference)) = (parse(agent_version), parse(reference)) else {
        return false;
    };
    if agent.len() != reference.len() {
        return false;
    }
    agent > reference
}

/// .what = how a session forwards local connections
/// .why = portsession.go `Initialize`: mux for newer agents, basic (one connection at a time) for older ones
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardingMode {
    /// smux v1 over the data channel, one stream per local connection
    Mux {
        /// whether to send smux NOP keep-alives
        keep_alive: bool,
    },
    /// raw bytes of one local connection at a time
    Basic,
}

impl ForwardingMode {
    /// .what = the mode an agent of this version gets
    /// .why = `DoesAgentSupportTCPMultiplexing` and `DoesAgentSupportDisableSmuxKeepAlive` (versionvalidator.go)
    pub fn for_agent(agent_version: &str) -> Self {
        if is_newer_than(agent_version, TCP_MULTIPLEXING_AFTER) {
            Self::Mux {
                keep_alive: !is_newer_than(agent_version, SMUX_KEEP_ALIVE_DISABLED_AFTER),
            }
        } else {
            Self::Basic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_as_versionutil_does() {
        assert!(is_newer_than("3.0.197.0", TCP_MULTIPLEXING_AFTER));
        assert!(is_newer_than("3.0.196.1", TCP_MULTIPLEXING_AFTER));
        assert!(!is_newer_than("3.0.196.0", TCP_MULTIPLEXING_AFTER));
        assert!(!is_newer_than("2.3.1509.0", TCP_MULTIPLEXING_AFTER));
        assert!(is_newer_than("10.0.0.0", TCP_MULTIPLEXING_AFTER));
        // different lengths and garbage are "not newer", as the Go code's errors are
        assert!(!is_newer_than("3.1", TCP_MULTIPLEXING_AFTER));
        assert!(!is_newer_than("", TCP_MULTIPLEXING_AFTER));
        assert!(!is_newer_than("3.x.1.0", TCP_MULTIPLEXING_AFTER));
    }

    #[test]
    fn chooses_the_mode_by_agent_version() {
        assert_eq!(
            ForwardingMode::for_agent("3.0.196.0"),
            ForwardingMode::Basic
        );
        assert_eq!(
            ForwardingMode::for_agent("3.0.222.0"),
            ForwardingMode::Mux { keep_alive: true }
        );
        assert_eq!(
            ForwardingMode::for_agent("3.1.1511.0"),
            ForwardingMode::Mux { keep_alive: true }
        );
        assert_eq!(
            ForwardingMode::for_agent("3.3.1142.0"),
            ForwardingMode::Mux { keep_alive: false }
        );
    }
}
