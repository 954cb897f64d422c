//! .what = the data channel's binary messages: the header, the payload types and flags, and the JSON payloads
//! .why = the simulator speaks exactly the framing the plugin parses; each layout cites the file that defines it
//! (aws/session-manager-plugin `src/message/clientmessage.go`, `messageparser.go`, `handshakemessage.go`;
//! aws/amazon-ssm-agent `agent/session/contracts/agentmessage.go`, `model.go`)

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// `clientmessage.go`: the message types
pub const INPUT_STREAM_DATA: &str = "input_stream_data";
/// `clientmessage.go`
pub const OUTPUT_STREAM_DATA: &str = "output_stream_data";
/// `clientmessage.go`
pub const ACKNOWLEDGE: &str = "acknowledge";
/// `clientmessage.go`
pub const CHANNEL_CLOSED: &str = "channel_closed";

/// .what = the payload types of `clientmessage.go` that the port session uses
/// .why = one name for each number
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadType {
    /// 1: stream bytes
    Output = 1,
    /// 5: the agent's HandshakeRequest
    HandshakeRequest = 5,
    /// 6: the client's HandshakeResponse
    HandshakeResponse = 6,
    /// 7: the agent's HandshakeComplete
    HandshakeComplete = 7,
    /// 10: a flag (u32 big-endian)
    Flag = 10,
}

/// .what = the port flags of `clientmessage.go` (`PayloadTypeFlag`)
/// .why = DisconnectToPort and TerminateSession come from the plugin, ConnectToPortError goes to it
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// 1: the plugin's local connection closed (basic mode)
    DisconnectToPort = 1,
    /// 2: the plugin got a control signal
    TerminateSession = 2,
    /// 3: the agent could not dial the destination (mux mode)
    ConnectToPortError = 3,
}

impl Flag {
    /// .what = the flag a payload carries
    /// .why = `binary.Read(buf, binary.BigEndian, &flag)` in the agent's port sessions
    pub fn from_payload(payload: &[u8]) -> Option<Self> {
        let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        match u32::from_be_bytes(bytes) {
            1 => Some(Self::DisconnectToPort),
            2 => Some(Self::TerminateSession),
            3 => Some(Self::ConnectToPortError),
            _ => None,
        }
    }

    /// .what = the payload of a flag message
    /// .why = `binary.Write(flagBuf, binary.BigEndian, ...)`
    pub fn payload(self) -> Vec<u8> {
        (self as u32).to_be_bytes().to_vec()
    }
}

// `clientmessage.go`: offsets of the header fields; `HeaderLength` holds the payload-length field's offset (116)
const MESSAGE_TYPE_OFFSET: usize = 4;
const MESSAGE_TYPE_LENGTH: usize = 32;
const SCHEMA_VERSION_OFFSET: usize = 36;
const CREATED_DATE_OFFSET: usize = 40;
const SEQUENCE_NUMBER_OFFSET: usize = 48;
const FLAGS_OFFSET: usize = 56;
const MESSAGE_ID_OFFSET: usize = 64;
const PAYLOAD_DIGEST_OFFSET: usize = 80;
const PAYLOAD_TYPE_OFFSET: usize = 112;
const PAYLOAD_LENGTH_OFFSET: usize = 116;
const PAYLOAD_OFFSET: usize = 120;

/// .what = one data-channel message, decoded
/// .why = what both sides exchange over the websocket's binary frames
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// e.g. `output_stream_data`
    pub message_type: String,
    /// always 1 (`SchemaVersion: 1` in both programs)
    pub schema_version: u32,
    /// epoch milliseconds; the plugin refuses 0 (`Validate`)
    pub created_date: u64,
    /// the stream sequence number (0 for acknowledgements and agent messages)
    pub sequence_number: i64,
    /// bit 0 on the agent's first stream message, 3 on acknowledgements
    pub flags: u64,
    /// the message id, as a UUID
    pub message_id: uuid::Uuid,
    /// a `PayloadType` number
    pub payload_type: u32,
    /// the payload
    pub payload: Vec<u8>,
}

/// .what = epoch milliseconds now
/// .why = `uint64(time.Now().UnixNano() / 1000000)` in both programs
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

impl ClientMessage {
    /// .what = a new message with a fresh id and the current time
    /// .why = every message the agent sends is built this way (`SendStreamDataMessage`, `sendAgentMessage`)
    pub fn new(
        message_type: &str,
        sequence_number: i64,
        flags: u64,
        payload_type: u32,
        payload: Vec<u8>,
    ) -> Self {
        Self {
            message_type: message_type.to_string(),
            schema_version: 1,
            created_date: now_millis(),
            sequence_number,
            flags,
            message_id: uuid::Uuid::new_v4(),
            payload_type,
            payload,
        }
    }

    /// .what = the bytes of this message
    /// .why = `messageparser.go` `SerializeClientMessage` / agent `Serialize`: big-endian fields, the type
    /// space-padded, the id's two 8-byte halves swapped (`putUuid`), the SHA-256 of the payload
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = vec![0u8; PAYLOAD_OFFSET + self.payload.len()];
        out[..4].copy_from_slice(&(PAYLOAD_LENGTH_OFFSET as u32).to_be_bytes());
        let type_field = &mut out[MESSAGE_TYPE_OFFSET..MESSAGE_TYPE_OFFSET + MESSAGE_TYPE_LENGTH];
        type_field.fill(b' ');
        let type_bytes = self.message_type.as_bytes();
        let type_length = type_bytes.len().min(MESSAGE_TYPE_LENGTH);
        type_field[..type_length].copy_from_slice(&type_bytes[..type_length]);
        out[SCHEMA_VERSION_OFFSET..SCHEMA_VERSION_OFFSET + 4]
            .copy_from_slice(&self.schema_version.to_be_bytes());
        out[CREATED_DATE_OFFSET..CREATED_DATE_OFFSET + 8]
            .copy_from_slice(&self.created_date.to_be_bytes());
        out[SEQUENCE_NUMBER_OFFSET..SEQUENCE_NUMBER_OFFSET + 8]
            .copy_from_slice(&self.sequence_number.to_be_bytes());
        out[FLAGS_OFFSET..FLAGS_OFFSET + 8].copy_from_slice(&self.flags.to_be_bytes());
        let id = self.message_id.as_bytes();
        out[MESSAGE_ID_OFFSET..MESSAGE_ID_OFFSET + 8].copy_from_slice(&id[8..16]);
        out[MESSAGE_ID_OFFSET + 8..MESSAGE_ID_OFFSET + 16].copy_from_slice(&id[0..8]);
        out[PAYLOAD_DIGEST_OFFSET..PAYLOAD_DIGEST_OFFSET + 32]
            .copy_from_slice(&Sha256::digest(&self.payload));
        out[PAYLOAD_TYPE_OFFSET..PAYLOAD_TYPE_OFFSET + 4]
            .copy_from_slice(&self.payload_type.to_be_bytes());
        out[PAYLOAD_LENGTH_OFFSET..PAYLOAD_LENGTH_OFFSET + 4]
            .copy_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out[PAYLOAD_OFFSET..].copy_from_slice(&self.payload);
        out
    }

    /// .what = the message in `input`, or why it is not one
    /// .why = `DeserializeClientMessage` then `Validate`: the payload starts after `HeaderLength + 4`, a
    /// non-empty payload must match its digest, the type and date must be set
    pub fn deserialize(input: &[u8]) -> Result<Self, String> {
        if input.len() < PAYLOAD_OFFSET {
            return Err(format!(
                "message of {} bytes is shorter than its header",
                input.len()
            ));
        }
        let u32_at = |offset: usize| {
            u32::from_be_bytes([
                input[offset],
                input[offset + 1],
                input[offset + 2],
                input[offset + 3],
            ])
        };
        let u64_at = |offset: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&input[offset..offset + 8]);
            u64::from_be_bytes(bytes)
        };
        let header_length = u32_at(0) as usize;
        let payload_start = header_length + 4;
        if header_length == 0 || payload_start > input.len() {
            return Err(format!("invalid HeaderLength {header_length}"));
        }
        let message_type = String::from_utf8_lossy(
            &input[MESSAGE_TYPE_OFFSET..MESSAGE_TYPE_OFFSET + MESSAGE_TYPE_LENGTH],
        )
        .trim_matches(char::from(0))
        .trim()
        .to_string();
        let mut id = [0u8; 16];
        id[8..16].copy_from_slice(&input[MESSAGE_ID_OFFSET..MESSAGE_ID_OFFSET + 8]);
        id[0..8].copy_from_slice(&input[MESSAGE_ID_OFFSET + 8..MESSAGE_ID_OFFSET + 16]);
        let payload = input[payload_start..].to_vec();
        let payload_length = u32_at(PAYLOAD_LENGTH_OFFSET);
        let message = Self {
            message_type,
            schema_version: u32_at(SCHEMA_VERSION_OFFSET),
            created_date: u64_at(CREATED_DATE_OFFSET),
            sequence_number: u64_at(SEQUENCE_NUMBER_OFFSET) as i64,
            flags: u64_at(FLAGS_OFFSET),
            message_id: uuid::Uuid::from_bytes(id),
            payload_type: u32_at(PAYLOAD_TYPE_OFFSET),
            payload,
        };
        if message.message_type.is_empty() {
            return Err("MessageType is missing".into());
        }
        if message.created_date == 0 {
            return Err("CreatedDate is missing".into());
        }
        if payload_length != 0
            && Sha256::digest(&message.payload).as_slice()
                != &input[PAYLOAD_DIGEST_OFFSET..PAYLOAD_DIGEST_OFFSET + 32]
        {
            return Err("payload Hash is not valid".into());
        }
        Ok(message)
    }
}

/// .what = an acknowledgement of `message`
/// .why = agent `SendAcknowledgeMessage` + `sendAgentMessage`: type `acknowledge`, sequence 0, flags 3, the JSON
/// `AcknowledgeContent` (`model.go`) with `IsSequentialMessage: true`
pub fn acknowledgement(message: &ClientMessage) -> ClientMessage {
    let content = serde_json::json!({
        "AcknowledgedMessageType": message.message_type,
        "AcknowledgedMessageId": message.message_id.to_string(),
        "AcknowledgedMessageSequenceNumber": message.sequence_number,
        "IsSequentialMessage": true,
    });
    ClientMessage::new(ACKNOWLEDGE, 0, 3, 0, content.to_string().into_bytes())
}

/// .what = the sequence number an acknowledgement acknowledges
/// .why = `ProcessAcknowledgedMessage` matches on `AcknowledgedMessageSequenceNumber` only
pub fn acknowledged_sequence(message: &ClientMessage) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(&message.payload)
        .ok()?
        .get("AcknowledgedMessageSequenceNumber")?
        .as_i64()
}

/// .what = a `channel_closed` message for `session_id` carrying `output`
/// .why = the plugin prints `SessionId: S : output`, or `Exiting session with sessionId: S.` when `output` is
/// empty (`streaming.go` `HandleChannelClosedMessage`); fields as `ChannelClosed` in `clientmessage.go`
pub fn channel_closed(session_id: &str, output: &str) -> ClientMessage {
    let message_id = uuid::Uuid::new_v4();
    let content = serde_json::json!({
        "MessageId": message_id.to_string(),
        "CreatedDate": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "DestinationId": session_id,
        "SessionId": session_id,
        "MessageType": CHANNEL_CLOSED,
        "SchemaVersion": 1,
        "Output": output,
    });
    let mut message = ClientMessage::new(CHANNEL_CLOSED, 0, 3, 0, content.to_string().into_bytes());
    message.message_id = message_id;
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_its_bytes() {
        let message = ClientMessage::new(
            OUTPUT_STREAM_DATA,
            7,
            1,
            PayloadType::Output as u32,
            b"hello".to_vec(),
        );
        let bytes = message.serialize();
        assert_eq!(&bytes[..4], &116u32.to_be_bytes(), "HeaderLength holds 116");
        assert_eq!(bytes.len(), 125);
        assert_eq!(ClientMessage::deserialize(&bytes), Ok(message));
    }

    #[test]
    fn a_wrong_digest_is_refused() {
        let mut bytes = ClientMessage::new(INPUT_STREAM_DATA, 0, 0, 1, b"x".to_vec()).serialize();
        bytes[PAYLOAD_DIGEST_OFFSET] ^= 1;
        assert!(ClientMessage::deserialize(&bytes).is_err());
    }

    #[test]
    fn flags_are_big_endian_u32() {
        assert_eq!(Flag::ConnectToPortError.payload(), vec![0, 0, 0, 3]);
        assert_eq!(
            Flag::from_payload(&[0, 0, 0, 2]),
            Some(Flag::TerminateSession)
        );
    }
}
