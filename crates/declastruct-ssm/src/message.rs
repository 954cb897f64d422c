//! .what = the data channel's binary message (`ClientMessage`): its layout, its types and its codec
//! .why = every byte between the client and the agent is one of these; the layout is the plugin's
//! (`src/message/clientmessage.go`, `src/message/messageparser.go` in aws/session-manager-plugin) and the agent's
//! (`agent/session/contracts/agentmessage.go` in aws/amazon-ssm-agent), which read and write the same bytes

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// .what = the value of the HeaderLength field: the offset of PayloadLength
/// .why = `SerializeClientMessage` writes `ClientMessage_PayloadLengthOffset` (116) there, and
/// `DeserializeClientMessage` reads the payload from HeaderLength + 4 (messageparser.go)
pub const HEADER_LENGTH: u32 = 116;

/// .what = where the payload starts in a message we write
/// .why = HeaderLength plus the 4 bytes of PayloadLength (clientmessage.go `ClientMessage_PayloadOffset`)
pub const PAYLOAD_OFFSET: usize = 120;

// field offsets and sizes, clientmessage.go `ClientMessage_*Offset` / `ClientMessage_*Length`
const MESSAGE_TYPE_OFFSET: usize = 4;
const MESSAGE_TYPE_LENGTH: usize = 32;
const SCHEMA_VERSION_OFFSET: usize = 36;
const CREATED_DATE_OFFSET: usize = 40;
const SEQUENCE_NUMBER_OFFSET: usize = 48;
const FLAGS_OFFSET: usize = 56;
const MESSAGE_ID_OFFSET: usize = 64;
const PAYLOAD_DIGEST_OFFSET: usize = 80;
const PAYLOAD_DIGEST_LENGTH: usize = 32;
const PAYLOAD_TYPE_OFFSET: usize = 112;
const PAYLOAD_LENGTH_OFFSET: usize = 116;

/// .what = the message type names of the data channel (clientmessage.go constants)
/// .why = the type decides how a message is handled (streaming.go `OutputMessageHandler`)
pub mod message_type {
    /// client → agent stream data
    pub const INPUT_STREAM_DATA: &str = "input_stream_data";
    /// agent → client stream data
    pub const OUTPUT_STREAM_DATA: &str = "output_stream_data";
    /// an acknowledgement of one stream message
    pub const ACKNOWLEDGE: &str = "acknowledge";
    /// the service or the agent ends the session
    pub const CHANNEL_CLOSED: &str = "channel_closed";
    /// the remote end is back: sending may resume
    pub const START_PUBLICATION: &str = "start_publication";
    /// the remote end is away: hold stream data
    pub const PAUSE_PUBLICATION: &str = "pause_publication";
}

/// .what = what a stream message's payload is (clientmessage.go `PayloadType`)
/// .why = the data channel routes handshake messages, flags and port data by it
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum PayloadType {
    /// port or shell data
    Output = 1,
    /// an error text
    Error = 2,
    /// a terminal size (shell sessions)
    Size = 3,
    /// a parameter (shell sessions)
    Parameter = 4,
    /// agent → client: the handshake's request
    HandshakeRequest = 5,
    /// client → agent: the handshake's response
    HandshakeResponse = 6,
    /// agent → client: the handshake is done
    HandshakeComplete = 7,
    /// agent → client: KMS encryption challenge
    EncryptionChallengeRequest = 8,
    /// client → agent: KMS encryption challenge answered
    EncryptionChallengeResponse = 9,
    /// a [`Flag`] as a big-endian u32
    Flag = 10,
    /// standard error (shell sessions)
    StdErr = 11,
    /// an exit code (command sessions)
    ExitCode = 12,
}

impl PayloadType {
    /// .what = the payload type of a number read from a message
    /// .why = a peer may send a number this client does not know; that is not a reason to fail
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Output,
            2 => Self::Error,
            3 => Self::Size,
            4 => Self::Parameter,
            5 => Self::HandshakeRequest,
            6 => Self::HandshakeResponse,
            7 => Self::HandshakeComplete,
            8 => Self::EncryptionChallengeRequest,
            9 => Self::EncryptionChallengeResponse,
            10 => Self::Flag,
            11 => Self::StdErr,
            12 => Self::ExitCode,
            _ => return None,
        })
    }
}

/// .what = the port session's control flags, sent as a Flag payload (clientmessage.go `PayloadTypeFlag`)
/// .why = basic mode tells the agent a local connection closed, Ctrl-C ends the session, and the agent says when
/// it could not reach the destination
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Flag {
    /// client → agent (basic mode): the local connection closed (basicportforwarding.go `ReadStream`)
    DisconnectToPort = 1,
    /// client → agent: end the session (muxportforwarding.go `handleControlSignals`)
    TerminateSession = 2,
    /// agent → client (mux mode): dialling the destination failed (agent `port_mux.go` `handleServerConnections`)
    ConnectToPortError = 3,
}

impl Flag {
    /// .what = the flag's payload: its number as a big-endian u32
    /// .why = `SendFlag` writes it with `binary.Write(.., binary.BigEndian, flagType)` (streaming.go)
    pub fn to_payload(self) -> Bytes {
        Bytes::copy_from_slice(&(self as u32).to_be_bytes())
    }

    /// .what = the flag in a Flag payload, if it is one this client knows
    /// .why = `WriteStream` reads it with `binary.Read(.., binary.BigEndian, &flag)` (muxportforwarding.go)
    pub fn from_payload(payload: &[u8]) -> Option<Self> {
        let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        match u32::from_be_bytes(bytes) {
            1 => Some(Self::DisconnectToPort),
            2 => Some(Self::TerminateSession),
            3 => Some(Self::ConnectToPortError),
            _ => None,
        }
    }
}

/// .what = one data-channel message, decoded
/// .why = the unit of sequencing, acknowledgement and retransmission
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// one of [`message_type`]
    pub message_type: String,
    /// 1 for every message the plugin writes
    pub schema_version: u32,
    /// epoch milliseconds
    pub created_date: u64,
    /// the stream's sequence number (0 for acknowledgements)
    pub sequence_number: i64,
    /// bit 0 SYN, bit 1 FIN
    pub flags: u64,
    /// a random UUID identifying this message
    pub message_id: Uuid,
    /// a [`PayloadType`] number
    pub payload_type: u32,
    /// the payload
    pub payload: Bytes,
}

/// .what = why bytes could not be read as a message
/// .why = a peer's malformed message is reported, never a panic
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// fewer bytes than a header
    #[error("a data channel message of {0} bytes is shorter than its 120-byte header")]
    TooShort(usize),
    /// the header length points past the message
    #[error(
        "a data channel message's header length {header_length} points past its {length} bytes"
    )]
    BadHeaderLength {
        /// the HeaderLength field
        header_length: u32,
        /// the message's length
        length: usize,
    },
    /// Validate(): HeaderLength 0, no type, no date
    #[error("a data channel message is invalid: {0}")]
    Invalid(&'static str),
    /// Validate(): the SHA-256 of the payload differs from PayloadDigest
    #[error("a data channel message's payload digest does not match its payload")]
    DigestMismatch,
}

impl ClientMessage {
    /// .what = a new message stamped now, with a new random id
    /// .why = every message the client sends has a fresh MessageId and CreatedDate (streaming.go
    /// `SendInputDataMessage`, messageparser.go `SerializeClientMessageWithAcknowledgeContent`)
    pub fn new(
        message_type: &str,
        sequence_number: i64,
        flags: u64,
        payload_type: u32,
        payload: Bytes,
    ) -> Self {
        Self {
            message_type: message_type.to_owned(),
            schema_version: 1,
            created_date: now_epoch_millis(),
            sequence_number,
            flags,
            message_id: Uuid::new_v4(),
            payload_type,
            payload,
        }
    }

    /// .what = the message as the bytes of one binary websocket frame
    /// .why = the layout of messageparser.go `SerializeClientMessage`: big-endian integers, the type padded with
    /// spaces (`putString`), the UUID's least significant half first (`putUuid`), SHA-256 of the payload
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(PAYLOAD_OFFSET + self.payload.len());
        out.put_u32(HEADER_LENGTH);
        let mut message_type = [b' '; MESSAGE_TYPE_LENGTH];
        let type_bytes = self.message_type.as_bytes();
        let type_length = type_bytes.len().min(MESSAGE_TYPE_LENGTH);
        message_type[..type_length].copy_from_slice(&type_bytes[..type_length]);
        out.put_slice(&message_type);
        out.put_u32(self.schema_version);
        out.put_u64(self.created_date);
        out.put_i64(self.sequence_number);
        out.put_u64(self.flags);
        let id = self.message_id.as_bytes();
        out.put_slice(&id[8..16]);
        out.put_slice(&id[0..8]);
        out.put_slice(&Sha256::digest(&self.payload));
        out.put_u32(self.payload_type);
        out.put_u32(u32::try_from(self.payload.len()).unwrap_or(u32::MAX));
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// .what = a message read from the bytes of a binary websocket frame, validated
    /// .why = `DeserializeClientMessage` then `Validate` (messageparser.go): the payload is everything after
    /// HeaderLength + 4, and its digest is checked unless the message is start/pause_publication or has no payload
    pub fn decode(input: &Bytes) -> Result<Self, DecodeError> {
        if input.len() < PAYLOAD_OFFSET {
            return Err(DecodeError::TooShort(input.len()));
        }
        let header_length = read_u32(input, 0);
        let payload_start = usize::try_from(header_length)
            .ok()
            .and_then(|length| length.checked_add(4))
            .filter(|start| *start <= input.len())
            .ok_or(DecodeError::BadHeaderLength {
                header_length,
                length: input.len(),
            })?;
        let message_type = String::from_utf8_lossy(
            &input[MESSAGE_TYPE_OFFSET..MESSAGE_TYPE_OFFSET + MESSAGE_TYPE_LENGTH],
        )
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_owned();
        let mut id = [0u8; 16];
        id[8..16].copy_from_slice(&input[MESSAGE_ID_OFFSET..MESSAGE_ID_OFFSET + 8]);
        id[0..8].copy_from_slice(&input[MESSAGE_ID_OFFSET + 8..MESSAGE_ID_OFFSET + 16]);
        let digest = &input[PAYLOAD_DIGEST_OFFSET..PAYLOAD_DIGEST_OFFSET + PAYLOAD_DIGEST_LENGTH];
        let payload_length = read_u32(input, PAYLOAD_LENGTH_OFFSET);
        let message = Self {
            message_type,
            schema_version: read_u32(input, SCHEMA_VERSION_OFFSET),
            created_date: read_u64(input, CREATED_DATE_OFFSET),
            sequence_number: read_u64(input, SEQUENCE_NUMBER_OFFSET) as i64,
            flags: read_u64(input, FLAGS_OFFSET),
            message_id: Uuid::from_bytes(id),
            payload_type: read_u32(input, PAYLOAD_TYPE_OFFSET),
            payload: input.slice(payload_start..),
        };
        // Validate() in messageparser.go
        if message.message_type == message_type::START_PUBLICATION
            || message.message_type == message_type::PAUSE_PUBLICATION
        {
            return Ok(message);
        }
        if header_length == 0 {
            return Err(DecodeError::Invalid("HeaderLength cannot be zero"));
        }
        if message.message_type.is_empty() {
            return Err(DecodeError::Invalid("MessageType is missing"));
        }
        if message.created_date == 0 {
            return Err(DecodeError::Invalid("CreatedDate is missing"));
        }
        if payload_length != 0 && Sha256::digest(&message.payload).as_slice() != digest {
            return Err(DecodeError::DigestMismatch);
        }
        Ok(message)
    }

    /// .what = the message id as the plugin prints it in an acknowledgement
    /// .why = `AcknowledgedMessageId` is `MessageId.String()` with `uuid.CleanHyphen` (lower-case, hyphens)
    pub fn message_id_text(&self) -> String {
        self.message_id.hyphenated().to_string()
    }

    /// .what = the payload type, if known
    /// .why = routing by type without matching numbers everywhere
    pub fn known_payload_type(&self) -> Option<PayloadType> {
        PayloadType::from_u32(self.payload_type)
    }
}

fn read_u32(input: &[u8], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&input[offset..offset + 4]);
    u32::from_be_bytes(bytes)
}

fn read_u64(input: &[u8], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&input[offset..offset + 8]);
    u64::from_be_bytes(bytes)
}

/// .what = now in epoch milliseconds
/// .why = CreatedDate is `time.Now().UnixNano() / 1000000` (streaming.go)
pub fn now_epoch_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// .what = a message laid out by hand, field by field as clientmessage.go lists them
    /// .why = the codec is checked against the Go layout, not against itself
    fn go_layout(
        message_type: &str,
        sequence: i64,
        flags: u64,
        id: [u8; 16],
        payload_type: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&116u32.to_be_bytes()); // HL
        let mut padded = [b' '; 32]; // putString wipes with spaces first
        padded[..message_type.len()].copy_from_slice(message_type.as_bytes());
        bytes.extend_from_slice(&padded);
        bytes.extend_from_slice(&1u32.to_be_bytes()); // SchemaVersion
        bytes.extend_from_slice(&1_700_000_000_123u64.to_be_bytes()); // CreatedDate
        bytes.extend_from_slice(&sequence.to_be_bytes());
        bytes.extend_from_slice(&flags.to_be_bytes());
        bytes.extend_from_slice(&id[8..16]); // putUuid: least significant long first
        bytes.extend_from_slice(&id[0..8]);
        bytes.extend_from_slice(&Sha256::digest(payload));
        bytes.extend_from_slice(&payload_type.to_be_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    const ID: [u8; 16] = [
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ];

    #[test]
    fn encodes_the_go_layout_byte_for_byte() {
        let message = ClientMessage {
            message_type: message_type::INPUT_STREAM_DATA.into(),
            schema_version: 1,
            created_date: 1_700_000_000_123,
            sequence_number: 42,
            flags: 0,
            message_id: Uuid::from_bytes(ID),
            payload_type: PayloadType::Output as u32,
            payload: Bytes::from_static(b"hello"),
        };
        let expected = go_layout("input_stream_data", 42, 0, ID, 1, b"hello");
        assert_eq!(message.encode().as_ref(), expected.as_slice());
        assert_eq!(expected.len(), 125);
        assert_eq!(&expected[120..], b"hello");
    }

    #[test]
    fn decodes_the_go_layout_and_swaps_the_uuid_halves_back() {
        let bytes = Bytes::from(go_layout(
            "output_stream_data",
            7,
            1,
            ID,
            5,
            b"{\"AgentVersion\":\"3.3.0.0\"}",
        ));
        let message = ClientMessage::decode(&bytes).expect("valid");
        assert_eq!(message.message_type, "output_stream_data");
        assert_eq!(message.sequence_number, 7);
        assert_eq!(message.flags, 1);
        assert_eq!(message.payload_type, 5);
        assert_eq!(message.message_id.as_bytes(), &ID);
        assert_eq!(
            message.message_id_text(),
            "01234567-89ab-cdef-fedc-ba9876543210"
        );
        assert_eq!(message.payload.as_ref(), b"{\"AgentVersion\":\"3.3.0.0\"}");
    }

    #[test]
    fn trims_nul_padding_as_get_string_does() {
        let mut bytes = go_layout("acknowledge", 0, 3, ID, 0, b"{}");
        for byte in &mut bytes[4 + 11..36] {
            *byte = 0;
        }
        let message = ClientMessage::decode(&Bytes::from(bytes)).expect("valid");
        assert_eq!(message.message_type, "acknowledge");
    }

    #[test]
    fn refuses_a_payload_whose_digest_differs() {
        let mut bytes = go_layout("output_stream_data", 0, 0, ID, 1, b"abc");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            ClientMessage::decode(&Bytes::from(bytes)),
            Err(DecodeError::DigestMismatch)
        );
    }

    #[test]
    fn publication_messages_are_not_validated() {
        let mut bytes = go_layout("pause_publication", 0, 0, ID, 0, b"");
        bytes[40..48].fill(0); // no CreatedDate
        let message = ClientMessage::decode(&Bytes::from(bytes)).expect("valid");
        assert_eq!(message.message_type, message_type::PAUSE_PUBLICATION);
    }

    #[test]
    fn refuses_short_and_inconsistent_input_without_panicking() {
        assert_eq!(
            ClientMessage::decode(&Bytes::from_static(&[0u8; 10])),
            Err(DecodeError::TooShort(10))
        );
        let mut bytes = go_layout("output_stream_data", 0, 0, ID, 1, b"x");
        bytes[0..4].copy_from_slice(&5000u32.to_be_bytes());
        assert!(matches!(
            ClientMessage::decode(&Bytes::from(bytes)),
            Err(DecodeError::BadHeaderLength { .. })
        ));
        let mut bytes = go_layout("output_stream_data", 0, 0, ID, 1, b"x");
        bytes[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            ClientMessage::decode(&Bytes::from(bytes)),
            Err(DecodeError::BadHeaderLength { .. })
        ));
    }

    #[test]
    fn flags_are_big_endian_u32() {
        assert_eq!(Flag::TerminateSession.to_payload().as_ref(), &[0, 0, 0, 2]);
        assert_eq!(
            Flag::from_payload(&[0, 0, 0, 3]),
            Some(Flag::ConnectToPortError)
        );
        assert_eq!(Flag::from_payload(&[0, 0]), None);
    }

    proptest::proptest! {
        #[test]
        fn any_message_round_trips(sequence in proptest::prelude::any::<i64>(), flags in proptest::prelude::any::<u64>(),
            id in proptest::prelude::any::<[u8; 16]>(), payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let message = ClientMessage {
                message_type: message_type::OUTPUT_STREAM_DATA.into(),
                schema_version: 1,
                created_date: 5,
                sequence_number: sequence,
                flags,
                message_id: Uuid::from_bytes(id),
                payload_type: 1,
                payload: Bytes::from(payload),
            };
            proptest::prop_assert_eq!(ClientMessage::decode(&message.encode()), Ok(message));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = ClientMessage::decode(&Bytes::from(bytes));
        }
    }
}
