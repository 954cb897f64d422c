//! .what = the faults a test can ask of the simulated service and agent, at start and while it runs
//! .why = the failures a tunnel meets in the field (a dropped websocket, a session the service will not resume,
//! an idle timeout, a slow or silent agent), made on demand; each one only does what the real service or agent
//! does in that case, as the comments say

use std::time::Duration;

/// .what = the message the service closes an idle session with
/// .why = the plugin prints it as `SessionId: S : Your session timed out due to inactivity and has been
/// terminated.` (the channel_closed Output, `streaming.go` `HandleChannelClosedMessage`), as users report it
/// (aws/amazon-ssm-agent issue #261); the service's own code is not public
pub const IDLE_TIMEOUT_MESSAGE: &str =
    "Your session timed out due to inactivity and has been terminated.";

/// .what = the faults in force
/// .why = set in `SimConfig::faults` at start, changed with `SsmSimulator::set_faults` while it runs
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// each session's first websocket is aborted (no close frame) this long after it opened; the plugin then
    /// calls ResumeSession and reconnects (`sessionhandler.go` `ResumeSessionHandler`, via
    /// `websocketchannel.go`'s `OnError` after its read retries)
    pub abort_websocket_after: Option<Duration>,
    /// ResumeSession answers without a token, as for a session the service has ended; the plugin prints
    /// `Session: S timed out.` and exits 0 (`sessionhandler.go` `ResumeSessionHandler`)
    pub refuse_resume: bool,
    /// a session with no stream data either way for this long is closed by the service with
    /// `IDLE_TIMEOUT_MESSAGE` (the account's idle timeout; 20 minutes by default in AWS)
    pub idle_timeout: Option<Duration>,
    /// the agent waits this long after the client's open message before its HandshakeRequest
    pub handshake_delay: Option<Duration>,
    /// the agent accepts the websocket and says nothing: no HandshakeRequest, no acknowledgements
    pub agent_silent: bool,
    /// API operations the caller's IAM policy does not allow (e.g. `DescribeSessions`): each is answered with
    /// `AccessDeniedException`, as IAM refuses an action no policy allows
    pub denied_operations: Vec<String>,
    /// the account's Session Manager preferences name this KMS key ("KMS encryption" on: the `kmsKeyId` input
    /// of the `SSM-SessionManagerRunShell` document), which the service hands the agent as the session's
    /// `KmsKeyId`. The agent asks the client for KMSEncryption in its HandshakeRequest only when
    /// `isEncryptionEnabled` holds: a key is set and the session's plugin is not `Port`
    /// (agent `agent/session/plugins/sessionplugin/sessionplugin.go`, "TODO: make encryption configurable for
    /// port plugin", so since the port plugin's first release, 3f309dff, 2019). The simulator's sessions are
    /// all port sessions, so the setting changes nothing in them, as in AWS
    pub preferences_kms_key_id: Option<String>,
}
