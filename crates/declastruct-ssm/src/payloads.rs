//! .what = the JSON documents carried by the data channel: the open message, acknowledgements, the handshake and
//! channel_closed
//! .why = field names and types are the plugin's (`src/service/service.go`, `src/message/clientmessage.go`,
//! `src/message/handshakemessage.go`); a misspelt field is a session that never opens

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// .what = the first (text) frame on a new websocket: the token that admits this client
/// .why = `FinalizeDataChannelHandshake` (streaming.go) sends `service.OpenDataChannelInput` after every dial,
/// also after ResumeSession with the new token
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpenDataChannelInput {
    /// `config.MessageSchemaVersion`, "1.0"
    #[serde(rename = "MessageSchemaVersion")]
    pub message_schema_version: String,
    /// a new UUID for every open
    #[serde(rename = "RequestId")]
    pub request_id: String,
    /// the token from StartSession or ResumeSession
    #[serde(rename = "TokenValue")]
    pub token_value: String,
    /// the client's UUID, the same for the whole session (session.go)
    #[serde(rename = "ClientId")]
    pub client_id: String,
    /// the client version the agent compares (port.go `muxSupportedClientVersion`)
    #[serde(rename = "ClientVersion")]
    pub client_version: String,
}

/// .what = an acknowledgement's payload
/// .why = clientmessage.go `AcknowledgeContent`; the agent matches it by sequence number
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcknowledgeContent {
    /// the acknowledged message's type
    #[serde(rename = "AcknowledgedMessageType")]
    pub message_type: String,
    /// the acknowledged message's id, hyphenated
    #[serde(rename = "AcknowledgedMessageId")]
    pub message_id: String,
    /// the acknowledged message's sequence number
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    /// always true (streaming.go `SendAcknowledgeMessage`)
    #[serde(rename = "IsSequentialMessage")]
    pub is_sequential_message: bool,
}

/// .what = the agent's handshake request
/// .why = handshakemessage.go `HandshakeRequestPayload`: the agent version decides mux or basic mode
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct HandshakeRequestPayload {
    /// the agent's version, e.g. "3.3.1142.0"
    #[serde(rename = "AgentVersion", default)]
    pub agent_version: String,
    /// what the agent asks the client to do
    #[serde(rename = "RequestedClientActions", default)]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// .what = one action the agent asks for
/// .why = handshakemessage.go `RequestedClientAction`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RequestedClientAction {
    /// "SessionType" or "KMSEncryption"
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// the action's parameters, read per type
    #[serde(rename = "ActionParameters", default)]
    pub action_parameters: Value,
}

/// .what = the action type that names the session's plugin
/// .why = handshakemessage.go `SessionType`
pub const ACTION_SESSION_TYPE: &str = "SessionType";
/// .what = the action type that asks for KMS encryption
/// .why = handshakemessage.go `KMSEncryption`
pub const ACTION_KMS_ENCRYPTION: &str = "KMSEncryption";

/// .what = an action's outcome (handshakemessage.go `ActionStatus`)
/// .why = the agent cancels the session on anything but Success (agent datachannel.go `handleHandshakeResponse`)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    /// done
    Success = 1,
    /// tried and failed
    Failed = 2,
    /// not known to this client
    Unsupported = 3,
}

/// .what = the client's handshake response
/// .why = handshakemessage.go `HandshakeResponsePayload`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HandshakeResponsePayload {
    /// the version the agent records (agent datachannel.go `handshake.clientVersion`)
    #[serde(rename = "ClientVersion")]
    pub client_version: String,
    /// one entry per requested action
    #[serde(rename = "ProcessedClientActions")]
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// the errors' texts; Go marshals an empty list as null
    #[serde(rename = "Errors")]
    pub errors: Option<Vec<String>>,
}

/// .what = one processed action
/// .why = handshakemessage.go `ProcessedClientAction`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessedClientAction {
    /// the requested action's type
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// an [`ActionStatus`] number
    #[serde(rename = "ActionStatus")]
    pub action_status: i32,
    /// the action's result (null for SessionType)
    #[serde(rename = "ActionResult")]
    pub action_result: Value,
    /// why it failed, or ""
    #[serde(rename = "Error")]
    pub error: String,
}

/// .what = the SessionType action's parameters
/// .why = handshakemessage.go `SessionTypeRequest`; "Port" with the port plugin's properties
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SessionTypeRequest {
    /// "Port" for port forwarding (config.go `PortPluginName`)
    #[serde(rename = "SessionType", default)]
    pub session_type: String,
    /// the plugin's properties
    #[serde(rename = "Properties", default)]
    pub properties: Value,
}

/// .what = the port plugin's properties, as the agent sends them
/// .why = portsession.go `PortParameters`: `type` "LocalPortForwarding" selects mux or basic forwarding
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
pub struct PortParameters {
    /// the destination port
    #[serde(rename = "portNumber", default)]
    pub port_number: String,
    /// the local port the user asked for
    #[serde(rename = "localPortNumber", default)]
    pub local_port_number: String,
    /// "LocalPortForwarding" for a local listener; anything else is stdin/stdout forwarding
    #[serde(rename = "type", default)]
    pub forwarding_type: String,
}

/// .what = the forwarding type of a local listener
/// .why = portsession.go `LocalPortForwardingType`
pub const LOCAL_PORT_FORWARDING: &str = "LocalPortForwarding";

/// .what = the KMSEncryption action's parameters
/// .why = handshakemessage.go `KMSEncryptionRequest`: the key the account's preferences name
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
pub struct KmsEncryptionRequest {
    /// the KMS key id
    #[serde(rename = "KMSKeyId", default)]
    pub kms_key_id: String,
}

/// .what = the agent's HandshakeComplete
/// .why = handshakemessage.go `HandshakeCompletePayload`; a customer message is shown to the user
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
pub struct HandshakeCompletePayload {
    /// a Go `time.Duration`: nanoseconds
    #[serde(rename = "HandshakeTimeToComplete", default)]
    pub handshake_time_to_complete: i64,
    /// shown to the user when not empty (streaming.go `handleHandshakeComplete`)
    #[serde(rename = "CustomerMessage", default)]
    pub customer_message: String,
}

/// .what = a channel_closed message's payload
/// .why = clientmessage.go `ChannelClosed`: `Output` is what the plugin prints as "SessionId: S : <Output>"
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
pub struct ChannelClosed {
    /// the message's id
    #[serde(rename = "MessageId", default)]
    pub message_id: String,
    /// the session that ends
    #[serde(rename = "SessionId", default)]
    pub session_id: String,
    /// why, or ""
    #[serde(rename = "Output", default)]
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_message_has_the_plugins_field_names() {
        let open = OpenDataChannelInput {
            message_schema_version: "1.0".into(),
            request_id: "r".into(),
            token_value: "t".into(),
            client_id: "c".into(),
            client_version: "1.2.650.0".into(),
        };
        assert_eq!(
            serde_json::to_string(&open).expect("serializes"),
            r#"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t","ClientId":"c","ClientVersion":"1.2.650.0"}"#
        );
    }

    #[test]
    fn a_handshake_request_as_the_agent_writes_it() {
        let json = r#"{"AgentVersion":"3.3.1142.0","RequestedClientActions":[{"ActionType":"SessionType",
            "ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"5432","type":"LocalPortForwarding","localPortNumber":"7775"}}}]}"#;
        let request: HandshakeRequestPayload = serde_json::from_str(json).expect("parses");
        assert_eq!(request.agent_version, "3.3.1142.0");
        let session: SessionTypeRequest = serde_json::from_value(
            request.requested_client_actions[0]
                .action_parameters
                .clone(),
        )
        .expect("parses");
        let port: PortParameters = serde_json::from_value(session.properties).expect("parses");
        assert_eq!(port.forwarding_type, LOCAL_PORT_FORWARDING);
        assert_eq!(port.local_port_number, "7775");
    }

    #[test]
    fn a_handshake_response_with_no_errors_says_null_as_go_does() {
        let response = HandshakeResponsePayload {
            client_version: "1.2.650.0".into(),
            processed_client_actions: vec![ProcessedClientAction {
                action_type: ACTION_SESSION_TYPE.into(),
                action_status: ActionStatus::Success as i32,
                action_result: Value::Null,
                error: String::new(),
            }],
            errors: None,
        };
        assert_eq!(
            serde_json::to_string(&response).expect("serializes"),
            r#"{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
    }
}
