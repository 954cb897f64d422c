//! .what = smux protocol version 1 frames, the multiplexing the agent's port plugin serves in mux mode
//! .why = the plugin opens one smux stream per local TCP connection (`muxportforwarding.go` `OpenStream`), and
//! the agent is the smux server (`agent/session/plugins/port/port_mux.go` `smux.Server`); the layout is
//! xtaci/smux v1 as vendored by the plugin (`vendor/src/github.com/xtaci/smux/frame.go`, `mux.go`)

/// `frame.go`: stream open
pub const CMD_SYN: u8 = 0;
/// `frame.go`: stream close, the EOF mark
pub const CMD_FIN: u8 = 1;
/// `frame.go`: data push
pub const CMD_PSH: u8 = 2;
/// `frame.go`: keep-alive, no operation
pub const CMD_NOP: u8 = 3;
/// `frame.go`: header size: version 1, cmd 1, length 2 (little-endian), stream id 4 (little-endian)
pub const HEADER_SIZE: usize = 8;
/// `mux.go` `DefaultConfig`: `MaxFrameSize: 32768`; a stream's write is cut into frames of at most this
pub const MAX_FRAME_SIZE: usize = 32768;
/// `mux.go` `DefaultConfig`: `Version: 1`, which both programs use
pub const VERSION: u8 = 1;

/// .what = one smux frame
/// .why = the unit the demultiplexer hands to the port plugin
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// one of the `CMD_*` values
    pub cmd: u8,
    /// the stream id (odd: the plugin is the smux client, `session.go` `nextStreamID = 1`)
    pub stream_id: u32,
    /// the data of a PSH frame
    pub data: Vec<u8>,
}

/// .what = the bytes of a frame
/// .why = what the agent's smux server writes for a stream (`session.go` `writeFrameInternal`)
pub fn encode(cmd: u8, stream_id: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + data.len());
    out.push(VERSION);
    out.push(cmd);
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(&stream_id.to_le_bytes());
    out.extend_from_slice(&data[..data.len().min(usize::from(u16::MAX))]);
    out
}

/// .what = PSH frames carrying `data` for a stream, each at most `MAX_FRAME_SIZE`
/// .why = `stream.go` `Write` splits a write into frames of the configured size
pub fn encode_data(stream_id: u32, data: &[u8]) -> Vec<u8> {
    data.chunks(MAX_FRAME_SIZE)
        .flat_map(|chunk| encode(CMD_PSH, stream_id, chunk))
        .collect()
}

/// .what = reassembles frames from the byte stream the data channel delivers in pieces
/// .why = the plugin's smux bytes reach the agent cut at arbitrary points (1024-byte messages,
/// `transferDataToServer`), so a frame may span messages
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    /// .what = the whole frames available after adding `bytes`, or an error for a frame of another version
    /// .why = `session.go` `recvLoop` ends the session on `errInvalidProtocol`
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            if self.buffer.len() < HEADER_SIZE {
                break;
            }
            let version = self.buffer[0];
            if version != VERSION {
                return Err(format!("smux frame of version {version}"));
            }
            let length = usize::from(u16::from_le_bytes([self.buffer[2], self.buffer[3]]));
            if self.buffer.len() < HEADER_SIZE + length {
                break;
            }
            let stream_id = u32::from_le_bytes([
                self.buffer[4],
                self.buffer[5],
                self.buffer[6],
                self.buffer[7],
            ]);
            let cmd = self.buffer[1];
            let data = self.buffer[HEADER_SIZE..HEADER_SIZE + length].to_vec();
            self.buffer.drain(..HEADER_SIZE + length);
            frames.push(Frame {
                cmd,
                stream_id,
                data,
            });
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_across_pieces() {
        let mut bytes = encode(CMD_SYN, 1, &[]);
        bytes.extend(encode_data(1, b"hello"));
        bytes.extend(encode(CMD_FIN, 1, &[]));
        let mut reader = FrameReader::default();
        let mut frames = Vec::new();
        for piece in bytes.chunks(3) {
            frames.extend(reader.push(piece).expect("version 1"));
        }
        assert_eq!(
            frames,
            vec![
                Frame {
                    cmd: CMD_SYN,
                    stream_id: 1,
                    data: vec![]
                },
                Frame {
                    cmd: CMD_PSH,
                    stream_id: 1,
                    data: b"hello".to_vec()
                },
                Frame {
                    cmd: CMD_FIN,
                    stream_id: 1,
                    data: vec![]
                },
            ]
        );
    }

    #[test]
    fn the_header_is_little_endian() {
        assert_eq!(
            encode(CMD_PSH, 3, b"ab"),
            vec![1, 2, 2, 0, 3, 0, 0, 0, b'a', b'b']
        );
    }

    #[test]
    fn large_writes_are_cut_into_frames() {
        let data = vec![7u8; MAX_FRAME_SIZE + 10];
        let mut reader = FrameReader::default();
        let frames = reader.push(&encode_data(5, &data)).expect("version 1");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].data.len(), 10);
    }
}
