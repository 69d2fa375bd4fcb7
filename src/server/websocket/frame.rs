//! WebSocket framing (RFC 6455 section 5) for a connection past its HTTP upgrade: a stream
//! adapter, [`WsStream`], that reads the NATS protocol out of the client's frames and writes
//! the broker's bytes as frames, so the client reader, writer and parser need no change.
//!
//! What it mirrors of nats-server 2.9 (`server/websocket.go`):
//! - frame boundaries mean nothing to the byte stream: binary, text and continuation
//!   payloads are simply concatenated (nats-server takes text frames as it takes binary ones
//!   and does not check their UTF-8);
//! - client frames must be masked (unless the client asked for `Nats-No-Masking`, see
//!   [`WsStream::no_masking`]), server frames are not;
//! - control frames are at most 125 bytes and never fragmented; a ping gets a pong with the
//!   same payload, a pong is ignored, a close gets a close back echoing the status and its
//!   text (a text that is not UTF-8 gets 1007 "invalid utf8 body in close frame") and ends
//!   the stream;
//! - a framing error is answered with a close frame of status 1002 and nats-server's text
//!   ("mask bit missing", "invalid continuation frame", ...), then the stream ends;
//! - a close text longer than a control frame allows is cut and ends in "...".
//!
//! Where it differs: a close frame without a status is answered with an empty close frame
//! (nats-server echoes 1005, a status RFC 6455 forbids on the wire); a close payload of one
//! byte, reserved bits RSV2/RSV3 and frames over [`MAX_FRAME_PAYLOAD`] are refused (1002,
//! 1002, 1009) where nats-server lets them by.
//!
//! permessage-deflate (RFC 7692) as nats-server negotiates it, with no context takeover
//! either way: a message whose first frame has RSV1 set is gathered whole and inflated
//! (up to [`MAX_FRAME_PAYLOAD`] each way), and a write of more than [`COMPRESS_THRESHOLD`]
//! bytes goes out deflated (first frame RSV1, the rest continuations of at most
//! `max_out_frame` bytes). Without the extension negotiated RSV1 is refused with 1002.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// Largest payload of a control frame (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The payload size of the frames sent to browsers: nats-server found they do better with
/// frames of 4 KiB.
pub const FRAME_SIZE_FOR_BROWSERS: usize = 4096;

/// Largest frame payload read from a client: the length is the peer's claim, and the reader
/// never needs the whole frame at once, but a client that announces more than this is not a
/// NATS client.
pub const MAX_FRAME_PAYLOAD: u64 = 64 << 20;

/// Largest frame header: 2 bytes, 8 of extended length, 4 of mask key.
pub const MAX_HEADER: usize = 14;

/// Close status codes (RFC 6455 section 7.4.1), the ones natsu sends.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
pub const CLOSE_INTERNAL_ERROR: u16 = 1011;
pub const CLOSE_TLS_HANDSHAKE: u16 = 1015;

/// How much of the client's bytes the reader holds at once. Any frame header and any
/// control frame fit in it, so it never needs to grow.
const READ_BUFFER: usize = 16 * 1024;

/// Writes of more than this many bytes are compressed when permessage-deflate is on
/// (nats-server's threshold: smaller ones gain nothing).
pub const COMPRESS_THRESHOLD: usize = 64;

/// The most of one write compressed into one message.
const MAX_COMPRESSED_WRITE: usize = 1 << 20;

/// The end of a deflate block flushed with SYNC_FLUSH, which permessage-deflate leaves off
/// the wire (RFC 7692 section 7.2.1).
const DEFLATE_TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Once drained, an out-buffer bigger than this (a big write with a big `max_out_frame`)
/// gives its memory back.
const OUT_BUFFER_KEPT: usize = 64 * 1024;

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        self as u8 >= 8
    }
}

/// A frame header as read from the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of its message.
    pub fin: bool,
    pub opcode: OpCode,
    /// The masking key, when the mask bit is set.
    pub mask: Option<[u8; 4]>,
    /// RSV1: the message is compressed (permessage-deflate; first frame only).
    pub rsv1: bool,
    /// The payload's length.
    pub len: u64,
}

/// What [`parse_frame_header`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of the header has arrived: read more.
    Incomplete,
    /// The header, and how many bytes it took.
    Complete(FrameHeader, usize),
}

/// A framing error: the close status and text to answer it with (nats-server's text where it
/// has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: u16,
    pub reason: String,
}

impl ProtocolError {
    fn new(code: u16, reason: impl Into<String>) -> ProtocolError {
        ProtocolError { code, reason: reason.into() }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket protocol error ({}): {}", self.code, self.reason)
    }
}

impl std::error::Error for ProtocolError {}

/// Append a frame header to `dst`: FIN as given, no reserved bits, the shortest length
/// encoding, and the mask key when given (a client's frame; the server sends `None`).
///
/// ```
/// use natsu::server::websocket::frame::{encode_frame_header, OpCode};
/// let mut header = Vec::new();
/// encode_frame_header(&mut header, true, OpCode::Binary, None, 300);
/// assert_eq!(header, [0x82, 126, 0x01, 0x2c]);
/// ```
pub fn encode_frame_header(dst: &mut Vec<u8>, fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) {
    dst.push(if fin { 0x80 } else { 0 } | opcode as u8);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len <= 125 {
        dst.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        dst.push(mask_bit | 126);
        dst.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        dst.push(mask_bit | 127);
        dst.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(key) = mask {
        dst.extend_from_slice(&key);
    }
}

/// Parse the frame header at the start of `buf`, refusing what no frame of this connection
/// may be: RSV2/RSV3 (RSV1 is the decoder's to judge), unknown opcodes, control frames with RSV1, control frames that
/// are fragmented or over 125 bytes, lengths with the top bit set or over `max_payload`.
/// Errors in the first two bytes are reported as soon as those have arrived.
///
/// ```
/// use natsu::server::websocket::frame::{parse_frame_header, FrameHeader, OpCode, Parsed};
/// let frame = [0x89, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
/// assert_eq!(parse_frame_header(&frame[..5], 1 << 20), Ok(Parsed::Incomplete));
/// let header = FrameHeader { fin: true, opcode: OpCode::Ping, mask: Some([1, 2, 3, 4]), len: 2, rsv1: false };
/// assert_eq!(parse_frame_header(&frame, 1 << 20), Ok(Parsed::Complete(header, 6)));
/// ```
pub fn parse_frame_header(buf: &[u8], max_payload: u64) -> Result<Parsed, ProtocolError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(Parsed::Incomplete),
    };
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 {
        return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, "reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = match OpCode::from_bits(b0 & 0x0f) {
        Some(op) => op,
        None => return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, format!("unknown opcode {}", b0 & 0x0f))),
    };
    let short = (b1 & 0x7f) as u64;
    if opcode.is_control() {
        if short > MAX_CONTROL_PAYLOAD as u64 {
            let reason = format!("control frame length bigger than maximum allowed of {MAX_CONTROL_PAYLOAD} bytes");
            return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, reason));
        }
        if !fin {
            return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, "control frame does not have final bit set"));
        }
        if rsv1 {
            return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, "control frame with RSV1 set"));
        }
    }
    let (len, at) = match short {
        126 => match buf.get(2..4) {
            Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
            None => return Ok(Parsed::Incomplete),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(Parsed::Incomplete),
        },
        n => (n, 2),
    };
    if len >> 63 != 0 {
        return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, "invalid frame length"));
    }
    if len > max_payload {
        let reason = format!("frame payload of {len} bytes is over the limit of {max_payload}");
        return Err(ProtocolError::new(CLOSE_MESSAGE_TOO_BIG, reason));
    }
    let (mask, at) = if b1 & 0x80 != 0 {
        match buf.get(at..at + 4) {
            Some(k) => (Some([k[0], k[1], k[2], k[3]]), at + 4),
            None => return Ok(Parsed::Incomplete),
        }
    } else {
        (None, at)
    };
    Ok(Parsed::Complete(FrameHeader { fin, opcode, mask, len, rsv1 }, at))
}

/// The payload of a close frame with `code` and `reason`, the reason cut to fit a control
/// frame and ending in "..." when cut, as nats-server does (at a character boundary, which
/// nats-server does not look for).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
        let mut end = MAX_CONTROL_PAYLOAD - 5;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        payload.extend_from_slice(b"...");
    } else {
        payload.extend_from_slice(reason.as_bytes());
    }
    payload
}

/// XOR `src` with the mask key starting at key byte `pos` into `dst`; the next key byte's
/// position.
fn unmask(src: &[u8], dst: &mut [u8], key: [u8; 4], pos: usize) -> usize {
    for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
        *d = s ^ key[(pos + i) & 3];
    }
    (pos + src.len()) & 3
}

/// One step of [`Decoder::decode`]; `input` is how many input bytes it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing can be done with the input there is: read more.
    More,
    /// `output` payload bytes (unmasked) were written at the start of the output buffer.
    Data { input: usize, output: usize },
    /// A data frame's header, or a pong: nothing for the caller.
    Skipped { input: usize },
    /// A ping: answer it with a pong carrying `payload`.
    Ping { input: usize, payload: Vec<u8> },
    /// A close: answer it with a close frame carrying `reply` (an empty payload when the
    /// client's close had no status), then end the stream.
    Close { input: usize, reply: Vec<u8> },
}

/// The client's frames, decoded incrementally: the byte stream inside them comes out,
/// whatever the split points of the input.
#[derive(Debug)]
pub struct Decoder {
    /// Frames must carry a mask (a client's always must, unless it asked not to).
    masked: bool,
    max_payload: u64,
    /// Payload bytes of the current data frame still to come; 0 when a header is next.
    left: u64,
    /// The current data frame's mask key (zeros when unmasked: XOR with zero is a copy).
    key: [u8; 4],
    /// Which key byte the next payload byte is masked with.
    key_pos: usize,
    /// A text or binary message has started and its final frame has not come: only
    /// continuation frames (and control frames) may come next.
    in_message: bool,
    /// permessage-deflate was negotiated: RSV1 may start a message.
    deflate: bool,
    /// The current message is compressed: its payload is for the inflater.
    compressed: bool,
    /// The last payload byte of a compressed message has just come out (taken by
    /// [`Decoder::take_compressed_end`]).
    compressed_end: bool,
}

impl Decoder {
    pub fn new(masked: bool, max_payload: u64) -> Decoder {
        Decoder { masked, max_payload, left: 0, key: [0; 4], key_pos: 0, in_message: false, deflate: false, compressed: false, compressed_end: false }
    }

    /// Whether the payload bytes coming out now belong to a compressed message.
    pub fn in_compressed(&self) -> bool {
        self.compressed || self.compressed_end
    }

    /// A compressed message has just ended: inflate what was gathered.
    pub fn take_compressed_end(&mut self) -> bool {
        std::mem::take(&mut self.compressed_end)
    }

    /// The end of a data frame's payload: the end of a compressed message when it was final.
    fn frame_done(&mut self) {
        if self.left == 0 && !self.in_message && self.compressed {
            self.compressed = false;
            self.compressed_end = true;
        }
    }

    /// Decode from the start of `input`, writing payload bytes to `out`. A control frame is
    /// taken whole only (it is at most 125 bytes), so `More` may leave some input unused.
    ///
    /// ```
    /// use natsu::server::websocket::frame::{Decoder, Step};
    /// let mut decoder = Decoder::new(true, 1 << 20);
    /// let frame = [0x82, 0x82, 0, 1, 0, 0, b'o', b'k' ^ 1];
    /// let mut out = [0u8; 16];
    /// assert_eq!(decoder.decode(&frame, &mut out), Ok(Step::Skipped { input: 6 }));
    /// assert_eq!(decoder.decode(&frame[6..], &mut out), Ok(Step::Data { input: 2, output: 2 }));
    /// assert_eq!(&out[..2], b"ok");
    /// ```
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, ProtocolError> {
        if self.left > 0 {
            let n = (input.len() as u64).min(self.left).min(out.len() as u64) as usize;
            if n == 0 {
                return Ok(Step::More);
            }
            self.key_pos = unmask(&input[..n], &mut out[..n], self.key, self.key_pos);
            self.left -= n as u64;
            self.frame_done();
            return Ok(Step::Data { input: n, output: n });
        }
        let (header, at) = match parse_frame_header(input, self.max_payload)? {
            Parsed::Incomplete => return Ok(Step::More),
            Parsed::Complete(header, at) => (header, at),
        };
        if self.masked && header.mask.is_none() {
            return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, "mask bit missing"));
        }
        let key = header.mask.unwrap_or([0; 4]);
        match header.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let continuation = header.opcode == OpCode::Continuation;
                if continuation && !self.in_message {
                    return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, "invalid continuation frame"));
                }
                if !continuation && self.in_message {
                    let reason = "new message started before final frame for previous message was received";
                    return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, reason));
                }
                if header.rsv1 && (!self.deflate || continuation) {
                    let reason = if continuation { "RSV1 set on a continuation frame" } else { "compression is not negotiated" };
                    return Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, reason));
                }
                if !continuation {
                    self.compressed = header.rsv1;
                }
                self.in_message = !header.fin;
                self.left = header.len;
                self.key = key;
                self.key_pos = 0;
                self.frame_done();
                Ok(Step::Skipped { input: at })
            }
            OpCode::Ping | OpCode::Pong | OpCode::Close => {
                let end = at + header.len as usize;
                if input.len() < end {
                    return Ok(Step::More);
                }
                let mut payload = vec![0u8; end - at];
                unmask(&input[at..end], &mut payload, key, 0);
                match header.opcode {
                    OpCode::Ping => Ok(Step::Ping { input: end, payload }),
                    OpCode::Pong => Ok(Step::Skipped { input: end }),
                    _ => Ok(Step::Close { input: end, reply: close_reply(&payload)? }),
                }
            }
        }
    }
}

/// The payload answering a client's close payload: its status and text echoed.
fn close_reply(payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    match payload {
        [] => Ok(Vec::new()),
        [_] => Err(ProtocolError::new(CLOSE_PROTOCOL_ERROR, "invalid close payload")),
        [hi, lo, text @ ..] => match std::str::from_utf8(text) {
            Ok(text) => Ok(close_payload(u16::from_be_bytes([*hi, *lo]), text)),
            // RFC 6455 section 5.5.1: a close frame's text is UTF-8.
            Err(_) => Ok(close_payload(CLOSE_INVALID_PAYLOAD, "invalid utf8 body in close frame")),
        },
    }
}

/// A byte stream carried in WebSocket frames over `S`, from the server's side: reads unwrap
/// the client's frames (answering pings and closes on their own), writes go out as unmasked
/// binary frames of at most `max_out_frame` bytes of payload.
///
/// The reader and the writer share one out-buffer that only ever holds whole frames: a
/// write's frame, the pongs and the close frame, in the order they were queued. A write
/// returns once all of it is in `S`, so nothing waits on a flush that might not come.
///
/// Only one side at a time drives the out-buffer into `S`: a glommio stream keeps one waker
/// per direction, and a reader writing while the writer waits would take the writer's
/// wake-up. So the reader drains only while no write is waiting; a waiting write drains
/// what the reader queued.
///
/// ```no_run
/// # use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// # use natsu::server::websocket::frame::{WsStream, FRAME_SIZE_FOR_BROWSERS};
/// # glommio::LocalExecutor::default().run(async {
/// let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let tcp = listener.accept().await.unwrap();
/// // ... the HTTP upgrade, which read `leftover` past the request ...
/// # let leftover = [];
/// let mut ws = WsStream::new(tcp, &leftover, FRAME_SIZE_FOR_BROWSERS);
/// ws.write_all(b"INFO {}\r\n").await.unwrap();
/// let mut buf = [0u8; 512];
/// let n = ws.read(&mut buf).await.unwrap();
/// # });
/// ```
pub struct WsStream<S> {
    inner: S,
    decoder: Decoder,
    /// The client's bytes not yet decoded: `rbuf[rstart..rend]`.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// The client closed, broke the framing or went away: reads return end of stream.
    read_done: bool,
    /// Whole frames to send; `out[out_pos..]` is not in `inner` yet.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes of the caller's buffer framed into `out` by a write that has not returned yet:
    /// the same write called again after `Pending` must not frame them twice.
    framed: usize,
    max_out_frame: usize,
    /// A close frame is queued or sent: nothing may follow it.
    close_queued: bool,
    /// The writer's last poll returned `Pending` on `inner`: its waker is the one
    /// registered, and the reader must not drain (see the type's doc). A write dropped
    /// while waiting leaves the reader's pongs to the next write.
    writer_waiting: bool,
    /// permessage-deflate, when negotiated.
    deflate: Option<Box<Deflate>>,
}

/// permessage-deflate's state: no context is kept between messages either way.
struct Deflate {
    /// The compressed message being gathered.
    zin: Vec<u8>,
    /// The last message inflated; `plain[plain_pos..]` is not read yet.
    plain: Vec<u8>,
    plain_pos: usize,
    inflater: flate2::Decompress,
    deflater: flate2::Compress,
    /// A write's compressed bytes.
    zout: Vec<u8>,
}

impl Deflate {
    fn new() -> Deflate {
        Deflate {
            zin: Vec::new(),
            plain: Vec::new(),
            plain_pos: 0,
            inflater: flate2::Decompress::new(false),
            // nats-server compresses with Go's BestSpeed.
            deflater: flate2::Compress::new(flate2::Compression::fast(), false),
            zout: Vec::new(),
        }
    }

    /// Add payload of the compressed message being gathered.
    fn gather(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        if (self.zin.len() + bytes.len()) as u64 > MAX_FRAME_PAYLOAD {
            return Err(ProtocolError::new(CLOSE_MESSAGE_TOO_BIG, "compressed message too big"));
        }
        self.zin.extend_from_slice(bytes);
        Ok(())
    }

    /// Inflate the gathered message into `plain`.
    fn inflate(&mut self) -> Result<(), ProtocolError> {
        self.zin.extend_from_slice(&DEFLATE_TAIL);
        self.inflater.reset(false);
        self.plain.clear();
        self.plain_pos = 0;
        let mut input = &self.zin[..];
        loop {
            if self.plain.len() == self.plain.capacity() {
                if self.plain.len() as u64 >= MAX_FRAME_PAYLOAD {
                    return Err(ProtocolError::new(CLOSE_MESSAGE_TOO_BIG, "decompressed message too big"));
                }
                self.plain.reserve(self.plain.len().max(4096));
            }
            let before = self.inflater.total_in();
            let status = self
                .inflater
                .decompress_vec(input, &mut self.plain, flate2::FlushDecompress::Sync)
                .map_err(|e| ProtocolError::new(CLOSE_INVALID_PAYLOAD, format!("invalid compressed data: {e}")))?;
            input = &input[(self.inflater.total_in() - before) as usize..];
            let room_left = self.plain.len() < self.plain.capacity();
            if status == flate2::Status::StreamEnd || (input.is_empty() && room_left) {
                break;
            }
        }
        self.zin.clear();
        if self.zin.capacity() > OUT_BUFFER_KEPT {
            self.zin = Vec::new();
        }
        Ok(())
    }

    /// Copy inflated bytes not read yet into `buf`: how many (0 when none are left).
    fn read_plain(&mut self, buf: &mut [u8]) -> usize {
        let n = (self.plain.len() - self.plain_pos).min(buf.len());
        buf[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() && self.plain.capacity() > OUT_BUFFER_KEPT {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
        n
    }

    /// Deflate `data` into `zout` as one message's payload (the sync flush's tail left off).
    fn deflate(&mut self, data: &[u8]) {
        self.deflater.reset();
        self.zout.clear();
        self.zout.reserve(data.len() / 2 + 64);
        let mut input = data;
        loop {
            if self.zout.len() == self.zout.capacity() {
                self.zout.reserve(self.zout.len().max(1024));
            }
            let before = self.deflater.total_in();
            // Compressing into a Vec with room cannot fail.
            let _ = self.deflater.compress_vec(input, &mut self.zout, flate2::FlushCompress::Sync);
            input = &input[(self.deflater.total_in() - before) as usize..];
            if input.is_empty() && self.zout.len() < self.zout.capacity() {
                break;
            }
        }
        if self.zout.ends_with(&DEFLATE_TAIL) {
            self.zout.truncate(self.zout.len() - DEFLATE_TAIL.len());
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Frame `inner`, whose first bytes past the handshake have been read into `leftover`;
    /// writes send at most `max_out_frame` bytes per frame (at least 1).
    pub fn new(inner: S, leftover: &[u8], max_out_frame: usize) -> WsStream<S> {
        let mut rbuf = vec![0u8; READ_BUFFER.max(leftover.len())];
        rbuf[..leftover.len()].copy_from_slice(leftover);
        WsStream {
            inner,
            decoder: Decoder::new(true, MAX_FRAME_PAYLOAD),
            rbuf,
            rstart: 0,
            rend: leftover.len(),
            read_done: false,
            out: Vec::new(),
            out_pos: 0,
            framed: 0,
            max_out_frame: max_out_frame.max(1),
            close_queued: false,
            writer_waiting: false,
            deflate: None,
        }
    }

    /// Speak permessage-deflate (the handshake accepted it): compressed messages from the
    /// client are inflated, writes over [`COMPRESS_THRESHOLD`] go out compressed.
    pub fn compressed(mut self) -> WsStream<S> {
        self.decoder.deflate = true;
        self.deflate = Some(Box::new(Deflate::new()));
        self
    }

    /// Frame `data` (compressed) as one message: the first frame with RSV1, the rest as
    /// continuations, each of at most `max_out_frame` bytes.
    fn queue_compressed(&mut self, zout: &[u8]) {
        let mut chunks = zout.chunks(self.max_out_frame).peekable();
        let mut first = true;
        if zout.is_empty() {
            encode_frame_header(&mut self.out, true, OpCode::Binary, None, 0);
            let at = self.out.len() - 2;
            self.out[at] |= 0x40;
            return;
        }
        while let Some(chunk) = chunks.next() {
            let at = self.out.len();
            let opcode = if first { OpCode::Binary } else { OpCode::Continuation };
            encode_frame_header(&mut self.out, chunks.peek().is_none(), opcode, None, chunk.len() as u64);
            if first {
                self.out[at] |= 0x40;
            }
            self.out.extend_from_slice(chunk);
            first = false;
        }
    }

    /// A framing or compression error: close with its status and end the stream.
    fn fail(&mut self, cx: &mut Context<'_>, e: ProtocolError) -> Poll<io::Result<usize>> {
        self.read_done = true;
        self.queue_close(e.code, &e.reason);
        self.drain_for_reader(cx);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// A compressed message ended: inflate it and hand out what fits in `buf`.
    fn inflated(&mut self, buf: &mut [u8]) -> Result<usize, ProtocolError> {
        let z = self.deflate.as_mut().expect("compressed frames only with deflate on");
        z.inflate()?;
        Ok(z.read_plain(buf))
    }

    /// Take the client's frames unmasked: it sent `Nats-No-Masking: true` (nats-server
    /// honours it, for leaf nodes over WebSocket).
    pub fn no_masking(mut self) -> WsStream<S> {
        self.decoder.masked = false;
        self
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Queue a close frame with `code` and `reason` (cut to fit, ending in "..."), sent after
    /// what is already queued and drained by the next write, flush or close. Only the first
    /// close counts; writes after it fail.
    pub fn queue_close(&mut self, code: u16, reason: &str) {
        self.queue_control(OpCode::Close, &close_payload(code, reason));
    }

    /// A close frame has been queued (by [`WsStream::queue_close`], or answering the client).
    pub fn close_queued(&self) -> bool {
        self.close_queued
    }

    fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        if self.close_queued {
            return;
        }
        debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        encode_frame_header(&mut self.out, true, opcode, None, payload.len() as u64);
        self.out.extend_from_slice(payload);
        self.close_queued = opcode == OpCode::Close;
    }

    /// Write the out-buffer into `inner` until it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.out_pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > OUT_BUFFER_KEPT {
            self.out = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// The reader's share of sending: what it queued goes out now unless a write is waiting
    /// (which sends it). Errors are left for the writer to meet.
    fn drain_for_reader(&mut self, cx: &mut Context<'_>) {
        if self.writer_waiting || self.out_pos == self.out.len() {
            return;
        }
        if let Poll::Ready(Ok(())) = self.poll_drain(cx) {
            // A TLS stream holds the record back until flushed.
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
    }

    /// The writer's flush and close: drain the out-buffer, then `then` on `inner`.
    fn poll_drain_then(&mut self, cx: &mut Context<'_>, then: fn(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<()>>) -> Poll<io::Result<()>> {
        let drained = self.poll_drain(cx);
        match self.writer_poll(drained) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let done = then(Pin::new(&mut self.inner), cx);
        self.writer_poll(done)
    }

    /// The writer's polls: record whether it left its waker with `inner`.
    fn writer_poll<T>(&mut self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.writer_waiting = poll.is_pending();
        poll
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.drain_for_reader(cx);
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(n) = this.deflate.as_mut().map(|z| z.read_plain(buf)).filter(|&n| n > 0) {
            return Poll::Ready(Ok(n));
        }
        if this.read_done {
            return Poll::Ready(Ok(0));
        }
        loop {
            let step = this.decoder.decode(&this.rbuf[this.rstart..this.rend], buf);
            let taken = match step {
                Err(e) => return this.fail(cx, e),
                Ok(Step::Data { input, output }) if this.decoder.in_compressed() => {
                    this.rstart += input;
                    let gathered = this.deflate.as_mut().expect("compressed frames only with deflate on").gather(&buf[..output]);
                    if let Err(e) = gathered {
                        return this.fail(cx, e);
                    }
                    if this.decoder.take_compressed_end() {
                        match this.inflated(buf) {
                            Ok(0) => {}
                            Ok(n) => return Poll::Ready(Ok(n)),
                            Err(e) => return this.fail(cx, e),
                        }
                    }
                    0
                }
                Ok(Step::Data { input, output }) => {
                    this.rstart += input;
                    return Poll::Ready(Ok(output));
                }
                Ok(Step::Skipped { input }) if this.decoder.take_compressed_end() => {
                    this.rstart += input;
                    match this.inflated(buf) {
                        Ok(0) => {}
                        Ok(n) => return Poll::Ready(Ok(n)),
                        Err(e) => return this.fail(cx, e),
                    }
                    0
                }
                Ok(Step::Skipped { input }) => input,
                Ok(Step::Ping { input, payload }) => {
                    this.queue_control(OpCode::Pong, &payload);
                    this.drain_for_reader(cx);
                    input
                }
                Ok(Step::Close { input, reply }) => {
                    this.rstart += input;
                    this.read_done = true;
                    this.queue_control(OpCode::Close, &reply);
                    this.drain_for_reader(cx);
                    return Poll::Ready(Ok(0));
                }
                Ok(Step::More) => {
                    // Whatever is pending is a partial header or control frame, which fits
                    // in the buffer once moved to its front.
                    if this.rstart > 0 {
                        this.rbuf.copy_within(this.rstart..this.rend, 0);
                        this.rend -= this.rstart;
                        this.rstart = 0;
                    }
                    match Pin::new(&mut this.inner).poll_read(cx, &mut this.rbuf[this.rend..]) {
                        Poll::Ready(Ok(0)) => {
                            this.read_done = true;
                            return Poll::Ready(Ok(0));
                        }
                        Poll::Ready(Ok(n)) => this.rend += n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                    0
                }
            };
            this.rstart += taken;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.framed == 0 {
            if this.close_queued {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "websocket close frame queued")));
            }
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            match this.deflate.as_mut().filter(|_| buf.len() > COMPRESS_THRESHOLD) {
                Some(z) => {
                    let n = buf.len().min(MAX_COMPRESSED_WRITE);
                    z.deflate(&buf[..n]);
                    let zout = std::mem::take(&mut z.zout);
                    this.queue_compressed(&zout);
                    if let Some(z) = this.deflate.as_mut() {
                        z.zout = zout;
                    }
                    this.framed = n;
                }
                None => {
                    let n = buf.len().min(this.max_out_frame);
                    encode_frame_header(&mut this.out, true, OpCode::Binary, None, n as u64);
                    this.out.extend_from_slice(&buf[..n]);
                    this.framed = n;
                }
            }
        }
        let drained = this.poll_drain(cx);
        match this.writer_poll(drained) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(std::mem::take(&mut this.framed))),
            Poll::Ready(Err(e)) => {
                this.framed = 0;
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain_then(cx, <S as AsyncWrite>::poll_flush)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            // The broker queues its own status first (nats-server maps the reason it closes
            // for); without one, the server is going away from this client.
            this.queue_close(CLOSE_GOING_AWAY, "");
        }
        this.poll_drain_then(cx, <S as AsyncWrite>::poll_close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use std::io::{Read, Write};

    const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    /// A client's frame, masked with `KEY`.
    fn client_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        encode_frame_header(&mut frame, fin, opcode, Some(KEY), payload.len() as u64);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i & 3]));
        frame
    }

    /// A server's frame, unmasked.
    fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        encode_frame_header(&mut frame, true, opcode, None, payload.len() as u64);
        frame.extend_from_slice(payload);
        frame
    }

    /// What decoding a client's bytes gave.
    #[derive(Debug, Default, PartialEq)]
    struct Decoded {
        data: Vec<u8>,
        pings: Vec<Vec<u8>>,
        close: Option<Vec<u8>>,
        error: Option<ProtocolError>,
    }

    /// Decode `chunks` arriving one after the other, into an output buffer of `out_size`.
    fn decode_chunks(chunks: &[&[u8]], out_size: usize) -> Decoded {
        let mut decoder = Decoder::new(true, MAX_FRAME_PAYLOAD);
        let mut got = Decoded::default();
        let mut pending = Vec::new();
        let mut out = vec![0u8; out_size];
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            loop {
                let input = match decoder.decode(&pending, &mut out) {
                    Ok(Step::More) => break,
                    Ok(Step::Data { input, output }) => {
                        got.data.extend_from_slice(&out[..output]);
                        input
                    }
                    Ok(Step::Skipped { input }) => input,
                    Ok(Step::Ping { input, payload }) => {
                        got.pings.push(payload);
                        input
                    }
                    Ok(Step::Close { reply, .. }) => {
                        got.close = Some(reply);
                        return got;
                    }
                    Err(e) => {
                        got.error = Some(e);
                        return got;
                    }
                };
                pending.drain(..input);
            }
        }
        got
    }

    fn decode(bytes: &[u8]) -> Decoded {
        decode_chunks(&[bytes], 4096)
    }

    #[test]
    fn headers_take_the_shortest_length_encoding_and_parse_back() {
        for (len, size, second) in [(0u64, 2, vec![0]), (125, 2, vec![125]), (126, 4, vec![126, 0, 126]), (65535, 4, vec![126, 0xff, 0xff]), (65536, 10, vec![127, 0, 0, 0, 0, 0, 1, 0, 0])] {
            for mask in [None, Some(KEY)] {
                let mut header = Vec::new();
                encode_frame_header(&mut header, true, OpCode::Binary, mask, len);
                let size = size + if mask.is_some() { 4 } else { 0 };
                assert_eq!(header.len(), size, "length {len}, mask {mask:?}");
                assert_eq!(header[0], 0x82);
                assert_eq!(header[1] & 0x7f, second[0]);
                assert_eq!(header[1] & 0x80 != 0, mask.is_some());
                assert_eq!(&header[2..second.len() + 1], &second[1..]);
                let expected = FrameHeader { fin: true, opcode: OpCode::Binary, mask, len, rsv1: false };
                assert_eq!(parse_frame_header(&header, u64::MAX >> 1), Ok(Parsed::Complete(expected, size)));
                for cut in 0..size {
                    assert_eq!(parse_frame_header(&header[..cut], u64::MAX >> 1), Ok(Parsed::Incomplete), "cut at {cut}");
                }
            }
        }
        let mut header = Vec::new();
        encode_frame_header(&mut header, false, OpCode::Continuation, None, 3);
        assert_eq!(header, [0x00, 3]);
    }

    /// A NATS byte stream in a message of two frames with a ping between them, a text
    /// frame, a pong, a frame with a 16-bit length, and a close.
    fn several_frames() -> (Vec<u8>, Vec<u8>) {
        let long: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut data = b"PUB foo 5\r\nhello\r\nPING\r\n".to_vec();
        data.extend_from_slice(&long);
        let mut wire = client_frame(false, OpCode::Binary, b"PUB foo 5\r\nhe");
        wire.extend(client_frame(true, OpCode::Ping, b"p1"));
        wire.extend(client_frame(true, OpCode::Continuation, b"llo\r\n"));
        wire.extend(client_frame(true, OpCode::Text, b"PING\r\n"));
        wire.extend(client_frame(true, OpCode::Pong, b""));
        wire.extend(client_frame(true, OpCode::Binary, &long));
        wire.extend(client_frame(true, OpCode::Close, &close_payload(1000, "bye")));
        (wire, data)
    }

    #[test]
    fn the_byte_stream_comes_out_whatever_the_split_points() {
        let (wire, data) = several_frames();
        let expected = Decoded { data, pings: vec![b"p1".to_vec()], close: Some(close_payload(1000, "bye")), error: None };
        assert_eq!(decode(&wire), expected);
        for i in 0..=wire.len() {
            for j in i..=wire.len() {
                let got = decode_chunks(&[&wire[..i], &wire[i..j], &wire[j..]], 64);
                assert_eq!(got, expected, "split at {i} and {j}");
            }
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes, 1), expected, "a byte at a time");
    }

    #[test]
    fn frames_breaking_the_rules_are_refused_with_nats_server_s_reasons() {
        let mut unmasked = Vec::new();
        encode_frame_header(&mut unmasked, true, OpCode::Binary, None, 1);
        unmasked.push(b'x');
        let mut over_limit = vec![0x82, 0xff];
        over_limit.extend_from_slice(&(MAX_FRAME_PAYLOAD + 1).to_be_bytes());
        let mut top_bit = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1];
        top_bit.extend_from_slice(&KEY);
        let mut rsv1 = client_frame(true, OpCode::Binary, b"x");
        rsv1[0] |= 0x40;
        let mut rsv3 = client_frame(true, OpCode::Binary, b"x");
        rsv3[0] |= 0x10;
        let mut opcode3 = client_frame(true, OpCode::Binary, b"x");
        opcode3[0] = 0x83;
        let mut two_messages = client_frame(false, OpCode::Binary, b"a");
        two_messages.extend(client_frame(true, OpCode::Binary, b"b"));
        let table: Vec<(&str, Vec<u8>, u16, &str)> = vec![
            ("unmasked", unmasked, 1002, "mask bit missing"),
            ("ping of 126", client_frame(true, OpCode::Ping, &[0; 126]), 1002, "control frame length bigger than maximum allowed of 125 bytes"),
            ("fragmented ping", client_frame(false, OpCode::Ping, b"x"), 1002, "control frame does not have final bit set"),
            ("fragmented close", client_frame(false, OpCode::Close, &[3, 232]), 1002, "control frame does not have final bit set"),
            ("RSV1", rsv1, 1002, "compression is not negotiated"),
            ("RSV3", rsv3, 1002, "reserved bits set"),
            ("opcode 3", opcode3, 1002, "unknown opcode 3"),
            ("lone continuation", client_frame(true, OpCode::Continuation, b"x"), 1002, "invalid continuation frame"),
            ("message in a message", two_messages, 1002, "new message started before final frame for previous message was received"),
            ("close of one byte", client_frame(true, OpCode::Close, &[3]), 1002, "invalid close payload"),
            ("length's top bit", top_bit, 1002, "invalid frame length"),
            ("over the limit", over_limit, 1009, "frame payload of 67108865 bytes is over the limit of 67108864"),
        ];
        for (name, wire, code, reason) in table {
            let got = decode(&wire);
            assert_eq!(got.error, Some(ProtocolError::new(code, reason)), "{name}");
            // Told as soon as the bytes that break the rule have arrived.
            let bytes: Vec<&[u8]> = wire.chunks(1).collect();
            assert_eq!(decode_chunks(&bytes, 1).error, Some(ProtocolError::new(code, reason)), "{name}, a byte at a time");
        }
    }

    #[test]
    fn a_client_that_asked_for_no_masking_may_send_unmasked_frames() {
        let mut decoder = Decoder::new(false, MAX_FRAME_PAYLOAD);
        let frame = server_frame(OpCode::Binary, b"PING\r\n");
        let mut out = [0u8; 16];
        assert_eq!(decoder.decode(&frame, &mut out), Ok(Step::Skipped { input: 2 }));
        assert_eq!(decoder.decode(&frame[2..], &mut out), Ok(Step::Data { input: 6, output: 6 }));
        assert_eq!(&out[..6], b"PING\r\n");
    }

    #[test]
    fn a_close_is_answered_with_its_status_and_text() {
        let close = |payload: &[u8]| decode(&client_frame(true, OpCode::Close, payload)).close;
        assert_eq!(close(b""), Some(Vec::new()));
        assert_eq!(close(&[0x03, 0xe9]), Some(vec![0x03, 0xe9]));
        assert_eq!(close(&close_payload(1000, "bye")), Some(b"\x03\xe8bye".to_vec()));
        assert_eq!(close(b"\x03\xe8\xff\xfe"), Some(close_payload(1007, "invalid utf8 body in close frame")));
    }

    #[test]
    fn a_long_close_text_is_cut_to_fit_and_says_so() {
        let payload = close_payload(1008, &"x".repeat(200));
        assert_eq!(payload.len(), MAX_CONTROL_PAYLOAD);
        assert_eq!(&payload[..2], &1008u16.to_be_bytes());
        assert!(payload.ends_with(b"x..."));
        assert_eq!(close_payload(1000, &"y".repeat(123)).len(), 125, "a text that fits is kept whole");
        // Never in the middle of a character.
        let payload = close_payload(1000, &"é".repeat(100));
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
    }

    /// A stream that takes 3 bytes per write and says `Pending` before each, and gives its
    /// input a byte per read.
    struct Trickle {
        input: Vec<u8>,
        read: usize,
        written: Vec<u8>,
        ready: bool,
    }

    impl Trickle {
        fn new(input: Vec<u8>) -> Trickle {
            Trickle { input, read: 0, written: Vec::new(), ready: false }
        }
    }

    impl AsyncRead for Trickle {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            if self.read == self.input.len() {
                return Poll::Ready(Ok(0));
            }
            buf[0] = self.input[self.read];
            self.read += 1;
            Poll::Ready(Ok(1))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.ready = !self.ready;
            if !self.ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(3);
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_write_retried_after_pending_is_framed_once_and_control_frames_go_between_frames() {
        let ping = client_frame(true, OpCode::Ping, b"p");
        let mut ws = WsStream::new(Trickle::new(ping), &[], 4);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // The write starts and waits on the stream: the reader meets a ping meanwhile and
        // leaves its pong to the waiting write.
        assert!(Pin::new(&mut ws).poll_write(&mut cx, b"hello").is_pending());
        let read = Pin::new(&mut ws).poll_read(&mut cx, &mut [0u8; 8]);
        assert!(matches!(read, Poll::Ready(Ok(0))), "{read:?}");
        assert_eq!(ws.inner.written, [0x82, 4, b'h'], "the pong waits for the write's frame");
        futures_lite::future::block_on(async {
            ws.write_all(b"hello").await.unwrap();
            ws.flush().await.unwrap();
        });
        let mut expected = server_frame(OpCode::Binary, b"hell");
        expected.extend(server_frame(OpCode::Pong, b"p"));
        expected.extend(server_frame(OpCode::Binary, b"o"));
        assert_eq!(ws.inner.written, expected);
    }

    #[test]
    fn the_reader_sends_pongs_and_the_close_reply_itself() {
        let mut wire = client_frame(true, OpCode::Binary, b"abc");
        wire.extend(client_frame(true, OpCode::Ping, b"x"));
        wire.extend(client_frame(true, OpCode::Binary, b"def"));
        wire.extend(client_frame(true, OpCode::Close, &close_payload(1000, "")));
        wire.extend(client_frame(true, OpCode::Binary, b"after the close"));
        let mut ws = WsStream::new(Trickle::new(wire), &[], 4096);
        let mut got = Vec::new();
        futures_lite::future::block_on(ws.read_to_end(&mut got)).unwrap();
        assert_eq!(got, b"abcdef");
        assert!(ws.close_queued());
        // The reader's drains go Pending every other time: the writer finishes them.
        futures_lite::future::block_on(ws.flush()).unwrap();
        let mut expected = server_frame(OpCode::Pong, b"x");
        expected.extend(server_frame(OpCode::Close, &[0x03, 0xe8]));
        assert_eq!(ws.inner.written, expected);
        let e = futures_lite::future::block_on(ws.write_all(b"late")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    /// Run `f` on a glommio executor of its own (small: locked memory is capped).
    fn run<F, Fut>(f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 << 10)
            .ring_depth(64)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_real_client_s_frames_pings_and_close_over_loopback() {
        use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode as Op};
        use tungstenite::protocol::frame::{CloseFrame, Frame};
        use tungstenite::protocol::{Role, WebSocket};
        use tungstenite::Message;

        run(|| async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                let tcp = std::net::TcpStream::connect(addr).unwrap();
                let mut ws = WebSocket::from_raw_socket(tcp, Role::Client, None);
                let first = Frame::message(b"PUB foo 5\r\nhe".to_vec(), Op::Data(Data::Binary), false);
                ws.send(Message::Frame(first)).unwrap();
                ws.send(Message::Ping(b"p1".to_vec())).unwrap();
                let rest = Frame::message(b"llo\r\n".to_vec(), Op::Data(Data::Continue), true);
                ws.send(Message::Frame(rest)).unwrap();
                ws.send(Message::Text("PING\r\n".into())).unwrap();
                assert_eq!(ws.read().unwrap(), Message::Pong(b"p1".to_vec()));
                let mut frames = Vec::new();
                for _ in 0..3 {
                    frames.push(ws.read().unwrap());
                }
                ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).unwrap();
                let reply = ws.read().unwrap();
                (frames, reply)
            });
            let tcp = listener.accept().await.unwrap();
            let mut ws = WsStream::new(tcp, &[], FRAME_SIZE_FOR_BROWSERS);
            let expected = b"PUB foo 5\r\nhello\r\nPING\r\n";
            let mut got = vec![0u8; expected.len()];
            ws.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected);
            let big: Vec<u8> = (0..10 * 1024u32).map(|i| (i % 251) as u8).collect();
            ws.write_all(&big).await.unwrap();
            assert_eq!(ws.read(&mut [0u8; 16]).await.unwrap(), 0, "the client's close ends the stream");
            ws.close().await.unwrap();
            let (frames, reply) = client.join().unwrap();
            let sizes: Vec<usize> = frames.iter().map(|m| m.len()).collect();
            assert_eq!(sizes, [4096, 4096, 2048]);
            assert!(frames.iter().all(|m| matches!(m, Message::Binary(_))));
            let sent: Vec<u8> = frames.into_iter().flat_map(|m| m.into_data()).collect();
            assert_eq!(sent, big);
            assert_eq!(reply, Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })));
        });
    }

    /// Send `wire` from a plain socket, shut its writing side, and return all it receives.
    fn raw_client(addr: std::net::SocketAddr, wire: Vec<u8>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.write_all(&wire).unwrap();
            let mut got = Vec::new();
            tcp.read_to_end(&mut got).unwrap();
            got
        })
    }

    #[test]
    fn an_unmasked_frame_gets_a_protocol_error_close_over_loopback() {
        run(|| async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = raw_client(listener.local_addr().unwrap(), vec![0x82, 0x01, b'x']);
            let mut ws = WsStream::new(listener.accept().await.unwrap(), &[], usize::MAX);
            let e = ws.read(&mut [0u8; 16]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert_eq!(ws.read(&mut [0u8; 16]).await.unwrap(), 0);
            ws.close().await.unwrap();
            assert_eq!(client.join().unwrap(), server_frame(OpCode::Close, b"\x03\xeamask bit missing"));
        });
    }

    #[test]
    fn leftover_bytes_come_first_and_the_server_closes_with_its_status() {
        run(|| async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut wire = client_frame(true, OpCode::Binary, b"SUB a 1\r\n");
            wire.extend(client_frame(true, OpCode::Binary, b"PING\r\n"));
            let client = raw_client(listener.local_addr().unwrap(), wire.split_off(5));
            let mut ws = WsStream::new(listener.accept().await.unwrap(), &wire, usize::MAX);
            let mut got = [0u8; 15];
            ws.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"SUB a 1\r\nPING\r\n");
            ws.write_all(b"PONG\r\n").await.unwrap();
            let reason = "Slow Consumer (Pending Bytes) ".repeat(5);
            ws.queue_close(CLOSE_POLICY_VIOLATION, &reason);
            ws.queue_close(CLOSE_NORMAL, "only the first close counts");
            assert_eq!(ws.write_all(b"late").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
            ws.close().await.unwrap();
            let mut expected = server_frame(OpCode::Binary, b"PONG\r\n");
            expected.extend(server_frame(OpCode::Close, &close_payload(1008, &reason)));
            assert_eq!(client.join().unwrap(), expected);
        });
    }

    #[test]
    fn closing_without_a_status_says_going_away() {
        run(|| async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = raw_client(listener.local_addr().unwrap(), Vec::new());
            let mut ws = WsStream::new(listener.accept().await.unwrap(), &[], usize::MAX);
            ws.close().await.unwrap();
            assert_eq!(client.join().unwrap(), [0x88, 0x02, 0x03, 0xe9]);
        });
    }
}
