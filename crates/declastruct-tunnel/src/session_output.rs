//! .what = the output protocol of `aws ssm start-session` and the session-manager-plugin, as a vocabulary of
//! lines: when a tunnel is ready, and why a session ended
//! .why = readiness and every failure message are read from what the real programs print; each line below
//! cites where the real program prints it (aws/session-manager-plugin at 61cf1288, aws/aws-cli v2 2.36.7)

use crate::supervisor::unstamped;

/// .what = one line of a session's output, understood
/// .why = readiness, health and failure reasons are decided on these, never on ad-hoc substring checks
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionLine<'a> {
    /// `\nStarting session with SessionId: {id}\n`: `session/session.go` `Execute`
    Starting {
        /// the session id
        session_id: &'a str,
    },
    /// `Port {port} opened for sessionId {id}.`: the local listener is up, in both port-forwarding modes
    /// (`session/portsession/muxportforwarding.go` `handleClientConnections`, `basicportforwarding.go`
    /// `startLocalListener`); older plugin releases are reported without the final period
    PortOpened {
        /// the local port
        port: u16,
        /// the session id
        session_id: &'a str,
    },
    /// `\nWaiting for connections...\n`: mux mode only, right after the port line
    WaitingForConnections,
    /// `\nConnection accepted for session [{id}]\n` (mux mode, first connection only: a `sync.Once`) or
    /// `Connection accepted for session {id}.` (basic mode, `startLocalConn`)
    ConnectionAccepted,
    /// `\nConnection to destination port failed, check SSM Agent logs.\n`: mux mode, `WriteStream`, each time
    /// the agent cannot reach the remote host and port
    DestinationFailed,
    /// `Session: {id} timed out.`: `session/sessionhandler.go` `ResumeSessionHandler`, then exit 0
    TimedOut,
    /// `Terminate signal received, exiting.`: `sessionutil/control_signals_unix.go` on SIGINT, SIGTSTP, SIGQUIT
    TerminateReceived,
    /// `\n\nExiting session with sessionId: {id}.\n\n`: after a control signal, or when the agent closes
    ExitingSession,
    /// `Cannot perform start session: {error}`: the plugin could not start (e.g. basic mode's local port is taken;
    /// mux mode says nothing then and waits, which the readiness deadline ends), exit 0
    CannotStart {
        /// the plugin's error
        reason: &'a str,
    },
    /// `An error occurred ({code}) when calling the StartSession operation: {message}`: the AWS CLI's service
    /// errors, exit 254 (`TargetNotConnected`, `AccessDeniedException`, ...)
    StartSessionError {
        /// the error code
        code: &'a str,
        /// the message
        message: &'a str,
    },
    /// `SessionManagerPlugin is not found. Please refer to SessionManager Documentation here: ...`: the AWS CLI
    /// (`awscli/customizations/sessionmanager.py`), exit 255; CLI 2.34 and later prefix `aws: [ERROR]: `
    PluginNotFound,
    /// `SessionId: {id} : {output}`: the service or the agent closed the channel with a message
    /// (`datachannel/streaming.go` `HandleChannelClosedMessage`), then exit 0: the idle timeout, basic mode's
    /// destination failure (`Unable to connect to specified port: …`), an agent shutting down
    ChannelClosed {
        /// the session id
        session_id: &'a str,
        /// the message
        output: &'a str,
    },
    /// the AWS CLI 1.x's warning about the plugin's version (stderr, `awscli/customizations/sessionmanager.py`),
    /// three lines that say nothing about the session
    CliPluginVersionWarning,
    /// a line declastruct itself wrote (stamped), without its stamp
    Declastruct(&'a str),
    /// anything else
    Other(&'a str),
}

const PORT_OPENED: (&str, &str) = ("Port ", " opened for sessionId ");
const WAITING: &str = "Waiting for connections...";
const ACCEPTED: &str = "Connection accepted for session ";
const DESTINATION_FAILED: &str = "Connection to destination port failed, check SSM Agent logs.";
const TERMINATE: &str = "Terminate signal received, exiting.";
const EXITING: &str = "Exiting session with sessionId: ";
const STARTING: &str = "Starting session with SessionId: ";
const CANNOT_START: &str = "Cannot perform start session: ";
const SERVICE_ERROR: (&str, &str) = (
    "An error occurred (",
    ") when calling the StartSession operation: ",
);
const PLUGIN_NOT_FOUND: &str = "SessionManagerPlugin is not found";
const CHANNEL_CLOSED: (&str, &str) = ("SessionId: ", " : ");
const CLI_VERSION_WARNING: [&str; 3] = [
    "WARNING: An outdated SessionManagerPlugin version detected.",
    "For more information, refer:",
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html",
];

/// .what = what one line of the log says
/// .why = the single place that knows the programs' wording
pub fn parse_line(line: &str) -> SessionLine<'_> {
    if let Some(text) = unstamped(line) {
        return SessionLine::Declastruct(text);
    }
    let line = line.trim();
    if let Some(rest) = line.strip_prefix(PORT_OPENED.0)
        && let Some((port, session_id)) = rest.split_once(PORT_OPENED.1)
        && let Ok(port) = port.parse()
    {
        let session_id = session_id.strip_suffix('.').unwrap_or(session_id);
        return SessionLine::PortOpened { port, session_id };
    }
    if line == WAITING {
        return SessionLine::WaitingForConnections;
    }
    if line.starts_with(ACCEPTED) {
        return SessionLine::ConnectionAccepted;
    }
    if line == DESTINATION_FAILED {
        return SessionLine::DestinationFailed;
    }
    if line.starts_with("Session: ") && line.ends_with(" timed out.") {
        return SessionLine::TimedOut;
    }
    if line == TERMINATE {
        return SessionLine::TerminateReceived;
    }
    if line.starts_with(EXITING) {
        return SessionLine::ExitingSession;
    }
    if let Some(session_id) = line.strip_prefix(STARTING) {
        return SessionLine::Starting { session_id };
    }
    if let Some(reason) = line.strip_prefix(CANNOT_START) {
        return SessionLine::CannotStart { reason };
    }
    let without_cli_prefix = line.strip_prefix("aws: [ERROR]: ").unwrap_or(line);
    if let Some(rest) = without_cli_prefix.strip_prefix(SERVICE_ERROR.0)
        && let Some((code, message)) = rest.split_once(SERVICE_ERROR.1)
    {
        return SessionLine::StartSessionError { code, message };
    }
    if without_cli_prefix.starts_with(PLUGIN_NOT_FOUND) {
        return SessionLine::PluginNotFound;
    }
    if let Some(rest) = line.strip_prefix(CHANNEL_CLOSED.0)
        && let Some((session_id, output)) = rest.split_once(CHANNEL_CLOSED.1)
        && !session_id.contains(' ')
    {
        return SessionLine::ChannelClosed { session_id, output };
    }
    if CLI_VERSION_WARNING
        .iter()
        .any(|warning| line.starts_with(warning))
    {
        return SessionLine::CliPluginVersionWarning;
    }
    SessionLine::Other(line)
}

/// .what = whether the session's output says its local listener on `local_port` is up
/// .why = readiness in both plugin modes: mux mode prints the port line and `Waiting for connections...`, basic
/// mode only the port line; waiting for the second alone times out every basic-mode tunnel
pub fn is_listening(output: &str, local_port: u16) -> bool {
    output
        .lines()
        .any(|line| matches!(parse_line(line), SessionLine::PortOpened { port, .. } if port == local_port))
}

/// .what = the plugin's port-forwarding mode, as its output shows it
/// .why = a basic-mode session serves one client at a time: a probe that waits behind a user's client is not a
/// sign of failure there
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginMode {
    /// multiplexed: many clients at once (agents newer than 3.0.196.0)
    Mux,
    /// basic: one client at a time (older agents)
    Basic,
}

/// .what = the mode of the last session in the output: mux when its port line is followed by the waiting line
/// .why = see `PluginMode`
pub fn plugin_mode(output: &str) -> Option<PluginMode> {
    let mut mode = None;
    for line in output.lines() {
        match parse_line(line) {
            SessionLine::PortOpened { .. } => mode = Some(PluginMode::Basic),
            SessionLine::WaitingForConnections if mode.is_some() => mode = Some(PluginMode::Mux),
            _ => {}
        }
    }
    mode
}

/// .what = why a session that did not become ready failed, and what to do, from its output
/// .why = the user gets the cause the programs reported, in words, with the fix
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFailure {
    /// what went wrong
    pub reason: String,
    /// what to do about it
    pub help: String,
    /// whether waiting longer may help: the bastion's SSM agent has not connected yet
    pub agent_not_connected: bool,
}

/// .what = the failure a session's output reports (the last recognised line wins)
/// .why = one translation from the programs' messages to a reason and a fix
pub fn explain_failure(output: &str) -> SessionFailure {
    let failure = |reason: &str, help: &str| SessionFailure {
        reason: reason.into(),
        help: help.into(),
        agent_not_connected: false,
    };
    let mut found = failure(
        "the session ended before it was ready",
        "look at the session's output above, fix what it says, and apply again",
    );
    for line in output.lines() {
        found = match parse_line(line) {
            SessionLine::StartSessionError {
                code: "TargetNotConnected",
                ..
            } => SessionFailure {
                agent_not_connected: true,
                ..failure(
                    "the bastion's SSM agent is not connected (TargetNotConnected)",
                    "right after a bastion starts its agent needs a minute: apply again; otherwise check that the instance runs the SSM agent with an instance profile that allows Session Manager (AmazonSSMManagedInstanceCore)",
                )
            },
            SessionLine::StartSessionError { code, .. }
                if code.starts_with("AccessDenied") || code == "UnauthorizedOperation" =>
            {
                failure(
                    "your AWS identity may not start a Session Manager session on this instance",
                    "ask for ssm:StartSession on the instance and the AWS-StartPortForwardingSessionToRemoteHost document, or set `aws.profile` to a profile that has it",
                )
            }
            SessionLine::StartSessionError { code, message } => SessionFailure {
                reason: format!("StartSession failed: {code}: {message}"),
                ..failure(
                    "",
                    "fix what AWS says (credentials, region, the instance id), then apply again",
                )
            },
            SessionLine::ChannelClosed { output, .. }
                if output.starts_with("Unable to connect to specified port") =>
            {
                SessionFailure {
                    reason: format!("the bastion could not reach the database: {output}"),
                    ..failure(
                        "",
                        "check that the database's security group admits the bastion on its port, and that the endpoint is the one you meant",
                    )
                }
            }
            SessionLine::ChannelClosed { output, .. } => SessionFailure {
                reason: format!("Session Manager closed the session: {output}"),
                ..failure(
                    "",
                    "apply again; if it keeps closing, read the SSM agent's log on the bastion",
                )
            },
            SessionLine::PluginNotFound => failure(
                "the Session Manager plugin is not installed",
                "install it: https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html",
            ),
            SessionLine::CannotStart { reason } => SessionFailure {
                reason: format!("the Session Manager plugin could not start: {reason}"),
                ..failure(
                    "",
                    "if another program took the local port meanwhile, find it with `ss -ltnp`, stop it or pick another `from.port`; then apply again",
                )
            },
            _ => continue,
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// the programs' exact output, mux mode: `session/session.go`, `muxportforwarding.go`
    const MUX: &str = "\nStarting session with SessionId: botocore-0123\nPort 7775 opened for sessionId botocore-0123.\nWaiting for connections...\n\nConnection accepted for session [botocore-0123]\n";
    /// basic mode: `basicportforwarding.go` prints the port line with `fmt.Println` and no waiting line
    const BASIC: &str = "\nStarting session with SessionId: botocore-0123\nPort 7775 opened for sessionId botocore-0123.\nConnection accepted for session botocore-0123.\n";

    #[test]
    fn every_line_of_the_vocabulary_is_recognised() {
        let cases = [
            (
                "Starting session with SessionId: s-1",
                SessionLine::Starting { session_id: "s-1" },
            ),
            (
                "Port 7775 opened for sessionId s-1.",
                SessionLine::PortOpened {
                    port: 7775,
                    session_id: "s-1",
                },
            ),
            (
                "Port 7775 opened for sessionId s-1",
                SessionLine::PortOpened {
                    port: 7775,
                    session_id: "s-1",
                },
            ),
            (
                "Waiting for connections...",
                SessionLine::WaitingForConnections,
            ),
            (
                "Connection accepted for session [s-1]",
                SessionLine::ConnectionAccepted,
            ),
            (
                "Connection accepted for session s-1.",
                SessionLine::ConnectionAccepted,
            ),
            (
                "Connection to destination port failed, check SSM Agent logs.",
                SessionLine::DestinationFailed,
            ),
            ("Session: s-1 timed out.", SessionLine::TimedOut),
            (
                "Terminate signal received, exiting.",
                SessionLine::TerminateReceived,
            ),
            (
                "Exiting session with sessionId: s-1.",
                SessionLine::ExitingSession,
            ),
            (
                "Cannot perform start session: listen tcp 127.0.0.1:7775: bind: address already in use",
                SessionLine::CannotStart {
                    reason: "listen tcp 127.0.0.1:7775: bind: address already in use",
                },
            ),
            (
                "An error occurred (TargetNotConnected) when calling the StartSession operation: i-0abc is not connected.",
                SessionLine::StartSessionError {
                    code: "TargetNotConnected",
                    message: "i-0abc is not connected.",
                },
            ),
            (
                "aws: [ERROR]: SessionManagerPlugin is not found. Please refer to SessionManager Documentation here: http://docs.aws.amazon.com/console/systems-manager/session-manager-plugin-not-found",
                SessionLine::PluginNotFound,
            ),
            ("something else", SessionLine::Other("something else")),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line), expected, "{line}");
        }
    }

    #[test]
    fn both_modes_are_ready_on_the_port_line() {
        assert!(is_listening(MUX, 7775));
        assert!(is_listening(BASIC, 7775));
        assert!(
            !is_listening(BASIC, 7776),
            "another port's line is not ours"
        );
        assert!(!is_listening(
            "\nStarting session with SessionId: s\n",
            7775
        ));
    }

    #[test]
    fn the_mode_is_read_from_the_last_session() {
        assert_eq!(plugin_mode(MUX), Some(PluginMode::Mux));
        assert_eq!(plugin_mode(BASIC), Some(PluginMode::Basic));
        assert_eq!(
            plugin_mode(&format!("{MUX}{BASIC}")),
            Some(PluginMode::Basic)
        );
        assert_eq!(plugin_mode("Starting session with SessionId: s"), None);
    }

    #[test]
    fn failures_are_explained_from_the_programs_words() {
        let refused = explain_failure(
            "\nAn error occurred (TargetNotConnected) when calling the StartSession operation: i-0abc is not connected.\n",
        );
        assert!(refused.agent_not_connected);
        assert!(refused.reason.contains("TargetNotConnected"));
        let denied = explain_failure(
            "An error occurred (AccessDeniedException) when calling the StartSession operation: User: x is not authorized",
        );
        assert!(denied.reason.contains("may not start"), "{denied:?}");
        assert!(!denied.agent_not_connected);
        let missing = explain_failure(
            "\nSessionManagerPlugin is not found. Please refer to SessionManager Documentation here: http://docs.aws.amazon.com/console/systems-manager/session-manager-plugin-not-found\n",
        );
        assert!(
            missing
                .help
                .contains("session-manager-working-with-install-plugin")
        );
        assert_eq!(
            explain_failure("garbage").reason,
            "the session ended before it was ready"
        );
    }

    /// every transcript of the real plugin and the real AWS CLI (`tests/fixtures/plugin`, recorded by
    /// `scripts/record-plugin-transcripts`) is read by the vocabulary: its readiness line where the port opened,
    /// the mode, and each failure line; any line not recognised and not listed above fails the test
    #[test]
    fn the_real_programs_transcripts_are_recognised() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugin");
        let mut transcripts: Vec<_> = std::fs::read_dir(&folder)
            .expect("the transcripts folder")
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
            .collect();
        transcripts.sort();
        assert!(transcripts.len() >= 10, "{transcripts:?}");
        let mut unrecognised = Vec::new();
        for path in &transcripts {
            let case = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or_default()
                .to_string();
            let text = std::fs::read_to_string(path).expect("a transcript");
            let output: String = text
                .lines()
                .filter(|line| !line.starts_with('#'))
                .map(|line| format!("{line}\n"))
                .collect();
            for line in output.lines().filter(|line| !line.trim().is_empty()) {
                if let SessionLine::Other(other) = parse_line(line) {
                    unrecognised.push(format!("{case}: {other}"));
                }
            }
            let opened = output.contains("Port 7775 opened");
            assert_eq!(is_listening(&output, 7775), opened, "{case}");
            if opened {
                let expected = if case.starts_with("basic") {
                    PluginMode::Basic
                } else {
                    PluginMode::Mux
                };
                assert_eq!(plugin_mode(&output), Some(expected), "{case}");
            }
            let lines: Vec<SessionLine<'_>> = output.lines().map(parse_line).collect();
            let has = |wanted: &SessionLine<'_>| lines.contains(wanted);
            match case.as_str() {
                "mux-destination-refused" => {
                    assert!(has(&SessionLine::DestinationFailed), "{case}");
                }
                "resume-refused" => assert!(has(&SessionLine::TimedOut), "{case}"),
                "idle-timeout" | "channel-closed" | "basic-destination-refused" => assert!(
                    lines
                        .iter()
                        .any(|line| matches!(line, SessionLine::ChannelClosed { .. })),
                    "{case}"
                ),
                "mux-sigint" | "basic-sigint" | "cli-mux-open-and-sigint" => {
                    assert!(has(&SessionLine::TerminateReceived), "{case}");
                    assert!(has(&SessionLine::ExitingSession), "{case}");
                }
                "cli-target-not-connected" => {
                    assert!(explain_failure(&output).agent_not_connected, "{case}");
                }
                _ => {}
            }
        }
        assert!(
            unrecognised.is_empty(),
            "lines of the real programs the vocabulary does not recognise:\n{}",
            unrecognised.join("\n")
        );
    }
}
