//! .what = the data channel's reliability, without I/O: sequence numbers both ways, acknowledgements, the
//! out-of-order buffer, the retransmission timer and the window of unacknowledged messages
//! .why = the data channel runs over websockets that the service replaces (ResumeSession), so each side numbers,
//! acknowledges and resends its stream messages itself (`src/datachannel/streaming.go`, `src/config/config.go` in
//! aws/session-manager-plugin; `agent/session/datachannel/datachannel.go` in aws/amazon-ssm-agent); kept free of
//! I/O and clocks so it is tested with a fake peer and a fake time

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::message::{ClientMessage, message_type};
use crate::payloads::AcknowledgeContent;

/// .what = how often unacknowledged messages are checked
/// .why = config.go `ResendSleepInterval`
pub const RESEND_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// .what = the first retransmission timeout
/// .why = config.go `DefaultTransmissionTimeout`
pub const DEFAULT_RETRANSMISSION_TIMEOUT: Duration = Duration::from_millis(200);
/// .what = the first round-trip estimate
/// .why = config.go `DefaultRoundTripTime`
pub const DEFAULT_ROUND_TRIP_TIME: Duration = Duration::from_millis(100);
/// .what = the largest retransmission timeout
/// .why = config.go `MaxTransmissionTimeout`
pub const MAX_RETRANSMISSION_TIMEOUT: Duration = Duration::from_secs(1);
/// .what = the smallest term added to the round trip
/// .why = config.go `ClockGranularity`
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(10);
/// .what = how many times one message is resent before the channel is declared dead
/// .why = config.go `ResendMaxAttempt` ("5 minutes / ResendSleepInterval"); the plugin then terminates the session
/// (session.go `handleStreamMessageResendTimeout`)
pub const MAX_RESEND_ATTEMPTS: u32 = 3000;
/// .what = how many out-of-order messages are kept
/// .why = config.go `IncomingMessageBufferCapacity`; beyond it a message is neither kept nor acknowledged
pub const INCOMING_BUFFER_CAPACITY: usize = 10_000;
/// .what = the most unacknowledged messages this client keeps
/// .why = config.go `OutgoingMessageBufferCapacity`; the plugin then drops its oldest (data lost); this client stops
/// reading its local connections instead
pub const OUTGOING_BUFFER_CAPACITY: usize = 10_000;

/// .what = the round-trip estimator
/// .why = streaming.go `CalculateRetransmissionTimeout` (Jacobson/Karels with the plugin's constants `RTTConstant`
/// 1/8 and `RTTVConstant` 1/4), seconds as f64
#[derive(Debug, Clone)]
pub struct RoundTrip {
    round_trip_time: f64,
    variation: f64,
    retransmission_timeout: Duration,
}

impl Default for RoundTrip {
    fn default() -> Self {
        Self {
            round_trip_time: DEFAULT_ROUND_TRIP_TIME.as_secs_f64(),
            variation: 0.0,
            retransmission_timeout: DEFAULT_RETRANSMISSION_TIMEOUT,
        }
    }
}

impl RoundTrip {
    /// .what = takes one measured round trip into the estimate
    /// .why = the variation is updated with the old estimate first, as streaming.go does
    pub fn sample(&mut self, measured: Duration) {
        let measured = measured.as_secs_f64();
        self.variation = 0.75 * self.variation + 0.25 * (self.round_trip_time - measured).abs();
        self.round_trip_time = 0.875 * self.round_trip_time + 0.125 * measured;
        let timeout =
            self.round_trip_time + CLOCK_GRANULARITY.as_secs_f64().max(4.0 * self.variation);
        self.retransmission_timeout =
            Duration::from_secs_f64(timeout.max(0.0)).min(MAX_RETRANSMISSION_TIMEOUT);
    }

    /// .what = how long to wait for an acknowledgement before resending
    /// .why = the retransmission check compares with it
    pub fn retransmission_timeout(&self) -> Duration {
        self.retransmission_timeout
    }
}

#[derive(Debug)]
struct Unacknowledged {
    sequence_number: i64,
    encoded: Bytes,
    payload_length: usize,
    last_sent: Instant,
    resend_attempts: u32,
}

/// .what = the limits of what this client keeps unacknowledged
/// .why = a bounded window is the back-pressure the plugin lacks: past it, local connections are not read
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// at most this many messages in flight
    pub max_messages: usize,
    /// at most this many payload bytes in flight
    pub max_bytes: usize,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            max_messages: OUTGOING_BUFFER_CAPACITY,
            // 512 KiB in flight still carries 17 MB/s over a 30 ms round trip (20× the plugin's cap), and is what
            // an open tunnel's memory holds after a heavy upload (docs/performance.md, the memory target)
            max_bytes: 512 * 1024,
        }
    }
}

/// .what = what a received stream message produced
/// .why = the driver sends the acknowledgements and hands the delivered messages, in sequence order, to the session
#[derive(Debug, Default)]
pub struct Received {
    /// acknowledgement messages to send, encoded
    pub acknowledgements: Vec<Bytes>,
    /// stream messages now in order, to be processed
    pub delivered: Vec<ClientMessage>,
}

/// .what = the retransmission check found the channel dead
/// .why = the plugin gives up after [`MAX_RESEND_ATTEMPTS`] and terminates the session
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendExhausted {
    /// the message that was never acknowledged
    pub sequence_number: i64,
}

/// .what = one side's state of the data channel
/// .why = see the module: numbering, acknowledging, buffering and resending
#[derive(Debug)]
pub struct DataChannelState {
    next_sequence_number: i64,
    expected_sequence_number: i64,
    outgoing: VecDeque<Unacknowledged>,
    outgoing_bytes: usize,
    incoming: BTreeMap<i64, ClientMessage>,
    round_trip: RoundTrip,
    window: Window,
    stream_message_type: &'static str,
}

impl DataChannelState {
    /// .what = a channel at sequence 0 both ways
    /// .why = streaming.go `Initialize`: both numbers start at 0
    pub fn new(window: Window) -> Self {
        Self::sending(message_type::INPUT_STREAM_DATA, window)
    }

    /// .what = a channel whose stream messages have the given type
    /// .why = the agent's side sends output_stream_data (agent datachannel.go `SendStreamDataMessage`): a fake agent
    /// or a simulator reuses this state
    pub fn sending(stream_message_type: &'static str, window: Window) -> Self {
        Self {
            stream_message_type,
            next_sequence_number: 0,
            expected_sequence_number: 0,
            outgoing: VecDeque::new(),
            outgoing_bytes: 0,
            incoming: BTreeMap::new(),
            round_trip: RoundTrip::default(),
            window,
        }
    }

    /// .what = whether one more message of `payload_length` bytes fits the window
    /// .why = the driver reads local connections only while this holds; an empty window always admits one
    pub fn has_room_for(&self, payload_length: usize) -> bool {
        self.outgoing.is_empty()
            || (self.outgoing.len() < self.window.max_messages
                && self.outgoing_bytes + payload_length <= self.window.max_bytes)
    }

    /// .what = numbers, encodes and records a stream message to send
    /// .why = streaming.go `SendInputDataMessage`: type input_stream_data, flags 0, the next sequence number; the
    /// message is kept until acknowledged
    pub fn send_stream_message(
        &mut self,
        payload_type: u32,
        payload: Bytes,
        now: Instant,
    ) -> Bytes {
        let payload_length = payload.len();
        let message = ClientMessage::new(
            self.stream_message_type,
            self.next_sequence_number,
            0,
            payload_type,
            payload,
        );
        let encoded = message.encode();
        self.outgoing.push_back(Unacknowledged {
            sequence_number: self.next_sequence_number,
            encoded: encoded.clone(),
            payload_length,
            last_sent: now,
            resend_attempts: 0,
        });
        self.outgoing_bytes += payload_length;
        self.next_sequence_number += 1;
        encoded
    }

    /// .what = takes an acknowledgement from the peer
    /// .why = streaming.go `ProcessAcknowledgedMessage`: the message with that sequence number leaves the buffer and
    /// its round trip updates the timeout; an unknown number is ignored
    pub fn on_acknowledge(&mut self, content: &AcknowledgeContent, now: Instant) {
        let Some(index) = self
            .outgoing
            .iter()
            .position(|message| message.sequence_number == content.sequence_number)
        else {
            return;
        };
        if let Some(message) = self.outgoing.remove(index) {
            self.round_trip
                .sample(now.saturating_duration_since(message.last_sent));
            self.outgoing_bytes -= message.payload_length;
        }
    }

    /// .what = takes a stream message from the peer
    /// .why = streaming.go `HandleOutputMessage`: the expected one is acknowledged and delivered with whatever the
    /// buffer holds after it; a later one is acknowledged and buffered while there is room; an earlier one (a resend
    /// whose acknowledgement was lost) is acknowledged again, as the agent does (datachannel.go
    /// `handleStreamDataMessage`), so the peer stops resending it
    pub fn on_stream_message(&mut self, message: ClientMessage) -> Received {
        let mut received = Received::default();
        let sequence_number = message.sequence_number;
        if sequence_number == self.expected_sequence_number {
            received
                .acknowledgements
                .push(acknowledgement_for(&message));
            received.delivered.push(message);
            self.expected_sequence_number += 1;
            while let Some(next) = self.incoming.remove(&self.expected_sequence_number) {
                received.delivered.push(next);
                self.expected_sequence_number += 1;
            }
        } else if sequence_number > self.expected_sequence_number {
            if self.incoming.len() < INCOMING_BUFFER_CAPACITY {
                received
                    .acknowledgements
                    .push(acknowledgement_for(&message));
                self.incoming.insert(sequence_number, message);
            }
        } else {
            received
                .acknowledgements
                .push(acknowledgement_for(&message));
        }
        received
    }

    /// .what = the oldest unacknowledged message, if its timeout has passed
    /// .why = streaming.go `ResendStreamDataMessageScheduler`: every [`RESEND_CHECK_INTERVAL`] the front of the
    /// buffer is resent when older than the timeout; its last-sent time is renewed (as the agent does; the plugin's
    /// copy never renews it), and after [`MAX_RESEND_ATTEMPTS`] the channel is dead
    pub fn due_retransmission(&mut self, now: Instant) -> Result<Option<Bytes>, ResendExhausted> {
        let timeout = self.round_trip.retransmission_timeout();
        let Some(front) = self.outgoing.front_mut() else {
            return Ok(None);
        };
        if now.saturating_duration_since(front.last_sent) <= timeout {
            return Ok(None);
        }
        if front.resend_attempts >= MAX_RESEND_ATTEMPTS {
            return Err(ResendExhausted {
                sequence_number: front.sequence_number,
            });
        }
        front.resend_attempts += 1;
        front.last_sent = now;
        Ok(Some(front.encoded.clone()))
    }

    /// .what = every unacknowledged message, oldest first, marked as sent now
    /// .why = after ResumeSession the new websocket carries what the old one may have lost; resending all at once
    /// spares the wait of one timeout per message that the plugin's one-at-a-time resend would cost
    pub fn resend_all(&mut self, now: Instant) -> Vec<Bytes> {
        self.outgoing
            .iter_mut()
            .map(|message| {
                message.last_sent = now;
                message.encoded.clone()
            })
            .collect()
    }

    /// .what = how many messages wait for an acknowledgement
    /// .why = a close waits for the TerminateSession flag's acknowledgement; tests look
    pub fn unacknowledged(&self) -> usize {
        self.outgoing.len()
    }

    /// .what = the sequence number the next stream message gets
    /// .why = tests, and the resume log line
    pub fn next_sequence_number(&self) -> i64 {
        self.next_sequence_number
    }

    /// .what = the sequence number expected next from the peer
    /// .why = tests, and the resume log line
    pub fn expected_sequence_number(&self) -> i64 {
        self.expected_sequence_number
    }

    /// .what = the current retransmission timeout
    /// .why = tests
    pub fn retransmission_timeout(&self) -> Duration {
        self.round_trip.retransmission_timeout()
    }
}

/// .what = the acknowledgement of one received stream message, encoded
/// .why = messageparser.go `SerializeClientMessageWithAcknowledgeContent`: type acknowledge, sequence 0, flags 3,
/// a JSON payload naming the message's type, id and sequence number
pub fn acknowledgement_for(message: &ClientMessage) -> Bytes {
    let content = AcknowledgeContent {
        message_type: message.message_type.clone(),
        message_id: message.message_id_text(),
        sequence_number: message.sequence_number,
        is_sequential_message: true,
    };
    let payload = serde_json::to_vec(&content).unwrap_or_default();
    ClientMessage::new(message_type::ACKNOWLEDGE, 0, 3, 0, Bytes::from(payload)).encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::PayloadType;

    fn from_peer(sequence_number: i64, payload: &'static [u8]) -> ClientMessage {
        ClientMessage::new(
            message_type::OUTPUT_STREAM_DATA,
            sequence_number,
            0,
            1,
            Bytes::from_static(payload),
        )
    }

    fn acknowledged(encoded: &Bytes) -> AcknowledgeContent {
        let message = ClientMessage::decode(encoded).expect("valid");
        assert_eq!(message.message_type, message_type::ACKNOWLEDGE);
        assert_eq!((message.sequence_number, message.flags), (0, 3));
        serde_json::from_slice(&message.payload).expect("json")
    }

    #[test]
    fn numbers_outgoing_messages_from_zero_and_forgets_them_when_acknowledged() {
        let mut channel = DataChannelState::new(Window::default());
        let now = Instant::now();
        let first =
            ClientMessage::decode(&channel.send_stream_message(1, Bytes::from_static(b"a"), now))
                .expect("valid");
        let second =
            ClientMessage::decode(&channel.send_stream_message(1, Bytes::from_static(b"b"), now))
                .expect("valid");
        assert_eq!((first.sequence_number, second.sequence_number), (0, 1));
        assert_eq!(first.message_type, message_type::INPUT_STREAM_DATA);
        assert_eq!(first.flags, 0);
        assert_eq!(channel.unacknowledged(), 2);
        channel.on_acknowledge(
            &AcknowledgeContent {
                message_type: message_type::INPUT_STREAM_DATA.into(),
                message_id: second.message_id_text(),
                sequence_number: 1,
                is_sequential_message: true,
            },
            now + Duration::from_millis(20),
        );
        assert_eq!(channel.unacknowledged(), 1);
    }

    #[test]
    fn delivers_in_order_buffers_ahead_and_reacknowledges_behind() {
        let mut channel = DataChannelState::new(Window::default());
        // 1 and 2 arrive before 0: acknowledged, held
        let received = channel.on_stream_message(from_peer(2, b"c"));
        assert!(received.delivered.is_empty());
        assert_eq!(
            acknowledged(&received.acknowledgements[0]).sequence_number,
            2
        );
        let received = channel.on_stream_message(from_peer(1, b"b"));
        assert!(received.delivered.is_empty());
        // 0 releases all three in order
        let received = channel.on_stream_message(from_peer(0, b"a"));
        let payloads: Vec<_> = received
            .delivered
            .iter()
            .map(|message| message.payload.clone())
            .collect();
        assert_eq!(payloads, [&b"a"[..], b"b", b"c"]);
        assert_eq!(received.acknowledgements.len(), 1);
        assert_eq!(channel.expected_sequence_number(), 3);
        // a resend of 1 is acknowledged again, not delivered again
        let received = channel.on_stream_message(from_peer(1, b"b"));
        assert!(received.delivered.is_empty());
        let content = acknowledged(&received.acknowledgements[0]);
        assert_eq!(content.sequence_number, 1);
        assert_eq!(content.message_type, message_type::OUTPUT_STREAM_DATA);
        assert!(content.is_sequential_message);
    }

    #[test]
    fn an_acknowledgement_names_the_message_as_the_plugin_does() {
        let message = from_peer(9, b"x");
        let content = acknowledged(&acknowledgement_for(&message));
        assert_eq!(
            content.message_id,
            message.message_id.hyphenated().to_string()
        );
        assert_eq!(content.sequence_number, 9);
    }

    #[test]
    fn resends_the_oldest_after_the_timeout_and_gives_up_after_3000_attempts() {
        let mut channel = DataChannelState::new(Window::default());
        let start = Instant::now();
        let sent = channel.send_stream_message(
            PayloadType::Output as u32,
            Bytes::from_static(b"a"),
            start,
        );
        channel.send_stream_message(PayloadType::Output as u32, Bytes::from_static(b"b"), start);
        assert_eq!(
            channel.due_retransmission(start + Duration::from_millis(150)),
            Ok(None)
        );
        let resent = channel
            .due_retransmission(start + Duration::from_millis(201))
            .expect("alive");
        assert_eq!(
            resent,
            Some(sent.clone()),
            "the same bytes, the same sequence number"
        );
        // renewed: not due again at once
        assert_eq!(
            channel.due_retransmission(start + Duration::from_millis(250)),
            Ok(None)
        );
        let mut now = start + Duration::from_millis(201);
        for _ in 1..MAX_RESEND_ATTEMPTS {
            now += Duration::from_millis(300);
            assert!(channel.due_retransmission(now).expect("alive").is_some());
        }
        now += Duration::from_millis(300);
        assert_eq!(
            channel.due_retransmission(now),
            Err(ResendExhausted { sequence_number: 0 })
        );
    }

    #[test]
    fn the_timeout_follows_the_round_trip_and_is_capped_at_one_second() {
        let mut round_trip = RoundTrip::default();
        assert_eq!(
            round_trip.retransmission_timeout(),
            Duration::from_millis(200)
        );
        // streaming.go with a 100 ms sample: rttv = 0, rtt = 100 ms, rto = 100 + max(10, 0) = 110 ms
        round_trip.sample(Duration::from_millis(100));
        assert_eq!(round_trip.retransmission_timeout().as_millis(), 110);
        // a 20 ms sample: rttv = 0.25*80 = 20 ms, rtt = 0.875*100+0.125*20 = 90 ms, rto = 90 + 80 = 170 ms
        round_trip.sample(Duration::from_millis(20));
        assert_eq!(round_trip.retransmission_timeout().as_millis(), 170);
        for _ in 0..10 {
            round_trip.sample(Duration::from_secs(5));
        }
        assert_eq!(
            round_trip.retransmission_timeout(),
            MAX_RETRANSMISSION_TIMEOUT
        );
    }

    #[test]
    fn the_window_bounds_messages_and_bytes_but_always_admits_one() {
        let mut channel = DataChannelState::new(Window {
            max_messages: 2,
            max_bytes: 10,
        });
        let now = Instant::now();
        assert!(
            channel.has_room_for(100),
            "an empty window admits even a large message"
        );
        channel.send_stream_message(1, Bytes::from_static(b"123456"), now);
        assert!(channel.has_room_for(4));
        assert!(!channel.has_room_for(5));
        channel.send_stream_message(1, Bytes::from_static(b"1"), now);
        assert!(!channel.has_room_for(1), "two messages is the limit");
    }

    #[test]
    fn resend_all_returns_every_unacknowledged_message_in_order() {
        let mut channel = DataChannelState::new(Window::default());
        let now = Instant::now();
        let sent: Vec<_> = (0..3u8)
            .map(|index| channel.send_stream_message(1, Bytes::from(vec![index]), now))
            .collect();
        assert_eq!(channel.resend_all(now + Duration::from_secs(1)), sent);
        assert_eq!(
            channel.due_retransmission(now + Duration::from_millis(1100)),
            Ok(None)
        );
    }
}
