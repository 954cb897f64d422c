//! .what = everything that can end or refuse a native session, with a code and what to do
//! .why = the command line renders these with miette; each says whether the user can fix it (a refused call, a
//! taken port, an account setting) or whether the peer broke the protocol

use std::net::SocketAddr;

use miette::Diagnostic;

/// .what = a native session's errors
/// .why = one enum for the API calls, the websocket, the handshake, the local listener and the protocol
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum SsmError {
    /// StartSession was refused (TargetNotConnected, AccessDeniedException, …)
    #[error("An error occurred ({code}) when calling the StartSession operation: {message}")]
    #[diagnostic(
        code(declastruct::ssm::start_session),
        help(
            "TargetNotConnected means the bastion's SSM agent has not registered yet (minutes after a start) or cannot reach SSM; AccessDeniedException means the credentials lack ssm:StartSession on the bastion and the document"
        )
    )]
    StartSession {
        /// the service's error code, or "Unknown"
        code: String,
        /// the service's message
        message: String,
    },

    /// ResumeSession failed (not: answered without a token, which is [`crate::SessionEnd::TimedOut`])
    #[error("ResumeSession for session {session_id} failed ({code}): {message}")]
    #[diagnostic(
        code(declastruct::ssm::resume_session),
        help("the websocket was lost and the session could not be resumed; open the tunnel again")
    )]
    ResumeSession {
        /// the session
        session_id: String,
        /// the service's error code, or "Unknown"
        code: String,
        /// the service's message
        message: String,
    },

    /// TerminateSession failed
    #[error("TerminateSession for session {session_id} failed ({code}): {message}")]
    #[diagnostic(
        code(declastruct::ssm::terminate_session),
        help(
            "the session may stay open until the account's idle timeout; the credentials need ssm:TerminateSession on their own sessions"
        )
    )]
    TerminateSession {
        /// the session
        session_id: String,
        /// the service's error code, or "Unknown"
        code: String,
        /// the service's message
        message: String,
    },

    /// the websocket to the stream URL could not be opened
    #[error("could not open the Session Manager data channel {url}: {reason}")]
    #[diagnostic(
        code(declastruct::ssm::websocket),
        help(
            "the machine must reach ssmmessages.<region>.amazonaws.com on port 443 (a proxy or firewall may block websockets)"
        )
    )]
    WebSocket {
        /// the stream URL, without its query
        url: String,
        /// why
        reason: String,
    },

    /// the agent did not complete the handshake in time
    #[error("the SSM agent on {target} did not complete the session handshake within {seconds} s")]
    #[diagnostic(
        code(declastruct::ssm::handshake_timeout),
        help(
            "the agent may be too old for a handshake (before 2.3.672.0) or busy; update the SSM agent on the bastion, or use `via.transport: plugin`"
        )
    )]
    HandshakeTimeout {
        /// the session's target
        target: String,
        /// the limit
        seconds: u64,
    },

    /// the account's Session Manager preferences ask for KMS encryption, which the native transport refuses
    #[error(
        "the session asks for KMS encryption (key {kms_key_id}), which the native transport does not support"
    )]
    #[diagnostic(
        code(declastruct::ssm::kms_encryption),
        help(
            "the account's Session Manager preferences have \"KMS encryption\" on (the kmsKeyId input of the SSM-SessionManagerRunShell document); use the plugin for this tunnel with `via.transport: plugin` (or DECLASTRUCT_TRANSPORT=plugin), or turn the setting off"
        )
    )]
    KmsEncryptionRequested {
        /// the key the preferences name
        kms_key_id: String,
    },

    /// the agent started a session that is not local port forwarding
    #[error(
        "the SSM agent started a session of type {session_type:?} ({detail}), not local port forwarding"
    )]
    #[diagnostic(
        code(declastruct::ssm::unsupported_session),
        help(
            "the StartSession document must be AWS-StartPortForwardingSession or AWS-StartPortForwardingSessionToRemoteHost"
        )
    )]
    UnsupportedSession {
        /// the handshake's SessionType
        session_type: String,
        /// what else was wrong
        detail: String,
    },

    /// a local address could not be listened on
    #[error("cannot listen on {address}: {reason}")]
    #[diagnostic(
        code(declastruct::ssm::local_listener),
        help("another program may hold the port: pick another `from.port`, or stop that program")
    )]
    LocalListener {
        /// the address
        address: SocketAddr,
        /// why
        reason: String,
    },

    /// the peer broke the protocol (a malformed message, an invalid smux frame)
    #[error("the Session Manager peer broke the protocol: {0}")]
    #[diagnostic(
        code(declastruct::ssm::protocol),
        help(
            "this is a bug in the native transport or in the peer; `via.transport: plugin` avoids it meanwhile"
        )
    )]
    Protocol(String),

    /// a message was resent 3000 times without an acknowledgement
    #[error(
        "the data channel of session {session_id} stopped acknowledging (message {sequence_number} resent 3000 times)"
    )]
    #[diagnostic(
        code(declastruct::ssm::retransmission_timeout),
        help(
            "the agent or the network stopped answering; the session was terminated, open the tunnel again"
        )
    )]
    RetransmissionTimeout {
        /// the session
        session_id: String,
        /// the message never acknowledged
        sequence_number: i64,
    },

    /// the session's task ended abnormally (a panic): a bug
    #[error("the native session's task ended abnormally: {0}")]
    #[diagnostic(
        code(declastruct::ssm::internal),
        help("this is a bug in declastruct; please report it")
    )]
    Internal(String),
}
