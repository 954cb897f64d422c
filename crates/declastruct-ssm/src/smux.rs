//! .what = smux protocol version 1 framing, the multiplexer of mux-mode port sessions
//! .why = the plugin and the agent run xtaci/smux over the data channel (`vendor/src/github.com/xtaci/smux` in
//! aws/session-manager-plugin, `vendor/github.com/xtaci/smux` in aws/amazon-ssm-agent) with `smux.DefaultConfig()`,
//! i.e. protocol version 1; this module reads and writes its frames without its flow control (v2 only)

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// .what = the protocol version both ends use
/// .why = `DefaultConfig()` sets `Version: 1` and neither side changes it (mux.go; muxportforwarding.go, port_mux.go)
pub const VERSION: u8 = 1;

/// .what = the size of a frame header
/// .why = frame.go: version 1 byte, cmd 1 byte, length 2 bytes, stream id 4 bytes
pub const HEADER_SIZE: usize = 8;

/// .what = the largest data a PSH frame carries
/// .why = `DefaultConfig().MaxFrameSize` is 32768 (mux.go); stream.go `Write` splits larger writes
pub const MAX_FRAME_DATA: usize = 32768;

/// .what = how often a keep-alive NOP is sent, when keep-alive is on
/// .why = `DefaultConfig().KeepAliveInterval` (mux.go); older agents close a session that is silent for
/// `KeepAliveTimeout` (30 s)
pub const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// .what = a frame's command (frame.go `cmdSYN`..`cmdUPD`)
/// .why = SYN opens a stream, FIN closes it, PSH carries data, NOP keeps the session alive, UPD is v2's window
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// stream open
    Syn = 0,
    /// stream close, the EOF mark
    Fin = 1,
    /// data push
    Psh = 2,
    /// no operation (keep-alive)
    Nop = 3,
    /// window update (protocol version 2; 8 bytes of data)
    Upd = 4,
}

/// .what = one decoded frame
/// .why = what the demultiplexer acts on
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// the command
    pub command: Command,
    /// the stream
    pub stream_id: u32,
    /// PSH's data (empty otherwise)
    pub data: Bytes,
}

/// .what = why the frame stream from the agent cannot be read on
/// .why = session.go `recvLoop` ends the whole session on these (`ErrInvalidProtocol`)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmuxError {
    /// a frame of another protocol version
    #[error("an smux frame of version {0}, not 1")]
    Version(u8),
    /// an unknown command
    #[error("an smux frame with the unknown command {0}")]
    Command(u8),
}

/// .what = writes a frame header and its data to `out`
/// .why = session.go `sendLoop`: version, cmd, length u16 little-endian, stream id u32 little-endian
pub fn put_frame(out: &mut BytesMut, command: Command, stream_id: u32, data: &[u8]) {
    debug_assert!(data.len() <= usize::from(u16::MAX));
    out.reserve(HEADER_SIZE + data.len());
    out.put_u8(VERSION);
    out.put_u8(command as u8);
    out.put_u16_le(u16::try_from(data.len()).unwrap_or(u16::MAX));
    out.put_u32_le(stream_id);
    out.put_slice(data);
}

/// .what = writes `data` as PSH frames of at most [`MAX_FRAME_DATA`] bytes
/// .why = stream.go `Write` splits a write into frames of `frameSize`
pub fn put_data(out: &mut BytesMut, stream_id: u32, data: &[u8]) {
    for chunk in data.chunks(MAX_FRAME_DATA) {
        put_frame(out, Command::Psh, stream_id, chunk);
    }
}

/// .what = reassembles frames from the agent's byte stream, however the data channel cut it
/// .why = the agent reads its smux socket in 1024-byte packets (port_mux.go `transferDataToMgs`), so a frame may
/// span messages and a message may hold many frames
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: BytesMut,
}

impl FrameReader {
    /// .what = appends bytes received from the agent
    /// .why = frames are taken out by [`FrameReader::next_frame`]
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// .what = the next complete frame, if one has arrived
    /// .why = session.go `recvLoop`: a header, then `Length` bytes for PSH, 8 bytes for UPD, nothing for the rest;
    /// a wrong version or an unknown command is a protocol error
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SmuxError> {
        if self.buffer.len() < HEADER_SIZE {
            return Ok(None);
        }
        let version = self.buffer[0];
        if version != VERSION {
            return Err(SmuxError::Version(version));
        }
        let command = match self.buffer[1] {
            0 => Command::Syn,
            1 => Command::Fin,
            2 => Command::Psh,
            3 => Command::Nop,
            4 => Command::Upd,
            other => return Err(SmuxError::Command(other)),
        };
        let length = usize::from(u16::from_le_bytes([self.buffer[2], self.buffer[3]]));
        let stream_id = u32::from_le_bytes([
            self.buffer[4],
            self.buffer[5],
            self.buffer[6],
            self.buffer[7],
        ]);
        let data_length = match command {
            Command::Psh => length,
            Command::Upd => 8,
            Command::Syn | Command::Fin | Command::Nop => 0,
        };
        if self.buffer.len() < HEADER_SIZE + data_length {
            return Ok(None);
        }
        self.buffer.advance(HEADER_SIZE);
        let data = self.buffer.split_to(data_length).freeze();
        let data = if command == Command::Psh {
            data
        } else {
            Bytes::new()
        };
        Ok(Some(Frame {
            command,
            stream_id,
            data,
        }))
    }
}

/// .what = hands out stream ids as the smux client does
/// .why = session.go: a client starts `nextStreamID` at 1 and adds 2 before each `OpenStream`, so its streams are
/// 3, 5, 7, …; when the id wraps, the session has gone away (`ErrGoAway`)
#[derive(Debug)]
pub struct StreamIds {
    next: u32,
}

impl Default for StreamIds {
    fn default() -> Self {
        Self { next: 1 }
    }
}

impl StreamIds {
    /// .what = the next stream id, or None when they are used up
    /// .why = session.go `OpenStream`'s overflow check `sid == sid%2`
    pub fn next_id(&mut self) -> Option<u32> {
        let id = self.next.checked_add(2)?;
        self.next = id;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_laid_out_as_frame_go_says() {
        let mut out = BytesMut::new();
        put_frame(&mut out, Command::Psh, 3, b"abc");
        assert_eq!(out.as_ref(), &[1, 2, 3, 0, 3, 0, 0, 0, b'a', b'b', b'c']);
        let mut out = BytesMut::new();
        put_frame(&mut out, Command::Syn, 0x0102_0304, b"");
        assert_eq!(out.as_ref(), &[1, 0, 0, 0, 4, 3, 2, 1]);
    }

    #[test]
    fn large_writes_are_split_into_32_kib_frames() {
        let mut out = BytesMut::new();
        put_data(&mut out, 5, &vec![7u8; MAX_FRAME_DATA + 10]);
        let mut reader = FrameReader::default();
        reader.push(&out);
        let first = reader.next_frame().expect("valid").expect("complete");
        let second = reader.next_frame().expect("valid").expect("complete");
        assert_eq!((first.data.len(), second.data.len()), (MAX_FRAME_DATA, 10));
        assert_eq!(reader.next_frame(), Ok(None));
    }

    #[test]
    fn frames_are_reassembled_across_any_cut() {
        let mut stream = BytesMut::new();
        put_frame(&mut stream, Command::Syn, 3, b"");
        put_data(&mut stream, 3, b"hello world");
        put_frame(&mut stream, Command::Upd, 3, &[0; 8]);
        put_frame(&mut stream, Command::Fin, 3, b"");
        for cut in 1..stream.len() {
            let mut reader = FrameReader::default();
            let mut frames = Vec::new();
            for piece in stream.chunks(cut) {
                reader.push(piece);
                while let Some(frame) = reader.next_frame().expect("valid") {
                    frames.push(frame);
                }
            }
            let commands: Vec<_> = frames.iter().map(|frame| frame.command).collect();
            assert_eq!(
                commands,
                [Command::Syn, Command::Psh, Command::Upd, Command::Fin],
                "cut {cut}"
            );
            assert_eq!(frames[1].data.as_ref(), b"hello world");
        }
    }

    #[test]
    fn another_version_or_command_is_a_protocol_error() {
        let mut reader = FrameReader::default();
        reader.push(&[2, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(reader.next_frame(), Err(SmuxError::Version(2)));
        let mut reader = FrameReader::default();
        reader.push(&[1, 9, 0, 0, 1, 0, 0, 0]);
        assert_eq!(reader.next_frame(), Err(SmuxError::Command(9)));
    }

    #[test]
    fn client_stream_ids_are_odd_from_three() {
        let mut ids = StreamIds::default();
        assert_eq!(
            (ids.next_id(), ids.next_id(), ids.next_id()),
            (Some(3), Some(5), Some(7))
        );
        let mut ids = StreamIds { next: u32::MAX - 1 };
        assert_eq!(ids.next_id(), None);
    }
}
