//! Wire frames of the TCP transport and their decoder. Depends on comm, error,
//! transport::seal; pure (no I/O), so the decoder can be fuzzed on byte strings.
//!
//! A frame is a 16-byte header followed by its payload:
//!
//! ```text
//!   0..4   payload length in bytes (u32 LE), at most `max_frame`, a multiple of 8 for data
//!   4      kind: 1 = data, 2 = bye (the sender finished the session cleanly),
//!          3 = abort (the sender stops after a failure; payload: u32 LE id of the party
//!          it blames, then a UTF-8 reason, at most `MAX_ABORT_BYTES` in all),
//!          4 = heartbeat (empty: the sender's I/O thread is alive; it sends one when it
//!          has sent nothing on the connection for a while, see `tcp::heartbeat_interval`)
//!   5      flags: bit 0 = FIN (last frame of a message), bit 1 = BULK (data frames only:
//!          the frame belongs to a background message); other bits must be zero
//!   6..8   reserved, zero
//!   8..16  tag (u64 LE)
//! ```
//!
//! A message (`Comm::post`) of any size is sent as consecutive data frames with the same tag,
//! the last one with FIN, so the frame cap bounds what a peer can make us allocate per
//! frame, and a message's memory grows only as its bytes actually arrive. A header that
//! breaks any rule closes the connection with a `Frame` error before anything is
//! allocated. Payload words are little-endian u64.
//!
//! On a sealed channel (the default over TCP, see `transport::seal`) every frame's payload
//! is encrypted and followed by a 16-byte tag; the header stays in clear and is
//! authenticated with it. A frame counts (its message words, a goodbye, an abort) only once
//! its tag checks.
//!
//! Background messages (`Comm::post_bulk`) are a second stream on the same connection: their
//! frames carry BULK and may sit between the frames of ordinary messages, so a sender can
//! cut a large background message into small frames and let an urgent message overtake it
//! at any frame boundary. The decoder therefore assembles one ordinary and one bulk message
//! at a time; within each stream the frames of a message are consecutive (a frame of
//! another tag before the FIN is refused, as it would be for ordinary messages alone). The
//! bulk frame size is the sender's choice (the decoder only applies the frame cap); the
//! receiver learns from the stream a completed message came in (`Event::Bulk`) so it can
//! emulate it as background traffic.

use std::collections::VecDeque;
use std::mem::MaybeUninit;

use super::seal::{Opener, TAG_BYTES};
use crate::comm::Tag;
use crate::error::{Error, Result};

pub const HEADER_BYTES: usize = 16;
/// Default cap on one frame's payload.
pub const MAX_FRAME_BYTES: usize = 4 << 20;
/// Cap on one whole message (a 64 GiB message is far beyond any model we run).
pub const MAX_MESSAGE_BYTES: u64 = 64 << 30;

pub const KIND_DATA: u8 = 1;
pub const KIND_BYE: u8 = 2;
pub const KIND_ABORT: u8 = 3;
/// An empty frame that only says the sender is alive. It may come between any two frames
/// (also between the frames of a message) and carries nothing for the application.
pub const KIND_HEARTBEAT: u8 = 4;
/// Cap on an abort frame's payload.
pub const MAX_ABORT_BYTES: usize = 1024;
pub const FLAG_FIN: u8 = 1;
pub const FLAG_BULK: u8 = 2;

/// The header of one frame.
pub fn header(kind: u8, flags: u8, len: usize, tag: Tag) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4] = kind;
    h[5] = flags;
    h[8..].copy_from_slice(&tag.0.to_le_bytes());
    h
}

/// How a message of `words` words is cut into frames: (first word, word count, FIN).
pub fn frames_of(words: usize, max_frame: usize) -> impl Iterator<Item = (usize, usize, bool)> {
    let per = (max_frame / 8).max(1);
    let count = words.div_ceil(per).max(1);
    (0..count).map(move |i| {
        let start = i * per;
        let len = per.min(words - start);
        (start, len, i + 1 == count)
    })
}

/// Little-endian bytes of `words` (a no-op view on little-endian machines).
pub fn words_as_bytes(words: &[u64]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: u64 has no padding and any byte is a valid u8; the length is exact.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8)
        })
    } else {
        std::borrow::Cow::Owned(words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }
}

/// A whole message as bytes (tests and the handshake-free paths).
pub fn encode_message(tag: Tag, data: &[u64], max_frame: usize) -> Vec<u8> {
    encode_frames(tag, data, max_frame, 0)
}

/// A whole background message as bytes (frames with `FLAG_BULK`).
pub fn encode_bulk_message(tag: Tag, data: &[u64], max_frame: usize) -> Vec<u8> {
    encode_frames(tag, data, max_frame, FLAG_BULK)
}

fn encode_frames(tag: Tag, data: &[u64], max_frame: usize, extra: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 8 + HEADER_BYTES);
    for (start, len, fin) in frames_of(data.len(), max_frame) {
        let flags = extra | if fin { FLAG_FIN } else { 0 };
        out.extend_from_slice(&header(KIND_DATA, flags, len * 8, tag));
        out.extend_from_slice(&words_as_bytes(&data[start..start + len]));
    }
    out
}

/// An abort frame: the sender stops because of `blame`'s failure, for `reason`.
pub fn abort_frame(blame: u32, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_ABORT_BYTES - 4);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = header(KIND_ABORT, 0, 4 + cut, Tag(0)).to_vec();
    out.extend_from_slice(&blame.to_le_bytes());
    out.extend_from_slice(&reason.as_bytes()[..cut]);
    out
}

/// A heartbeat frame (`KIND_HEARTBEAT`).
pub fn heartbeat_frame() -> [u8; HEADER_BYTES] {
    header(KIND_HEARTBEAT, 0, 0, Tag(0))
}

/// `text` from a peer (an abort reason) made safe to print: control characters (terminal
/// escapes, newlines, carriage returns, C1 controls) and bidirectional overrides, which
/// could forge or hide log lines, become visible `\u{..}` escapes; the rest is kept.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// What the decoder produces.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Msg(Tag, Vec<u64>),
    /// A background message (its frames carried `FLAG_BULK`).
    Bulk(Tag, Vec<u64>),
    Bye,
    /// A heartbeat: the peer is alive; nothing for the application.
    Heartbeat,
    Abort {
        blame: u32,
        reason: String,
    },
}

/// Incremental frame decoder: feed it bytes as they come, in any split.
pub struct Decoder {
    max_frame: usize,
    /// Cap on one whole message in bytes.
    max_message: u64,
    hdr: [u8; HEADER_BYTES],
    hdr_fill: usize,
    /// Payload bytes of the current frame still to come (0 = reading a header).
    frame_left: usize,
    frame_fin: bool,
    /// Which stream the current frame belongs to (0 ordinary, 1 bulk).
    frame_stream: usize,
    /// The message being assembled in each stream (ordinary, bulk): tag, words, and the
    /// caller's time stamp (`set_time`) of its first byte. `filled` bytes of the current
    /// frame's stream buffer are valid.
    cur: [Option<(Tag, Vec<u64>, u64)>; 2],
    filled: usize,
    /// The caller's time for the bytes being fed, and the time of the first byte of the
    /// header being read: a message's start time is that of its first header's first byte,
    /// even when the header straddles two reads.
    now: u64,
    hdr_time: u64,
    events: VecDeque<(Event, u64)>,
    failed: bool,
    /// Payload of an abort frame being received (None: the payload is message words).
    abort: Option<Vec<u8>>,
    /// Sealed channel (`transport::seal`): every frame's payload is followed by a tag,
    /// checked (and the payload decrypted) before the frame counts.
    opener: Option<Opener>,
    /// Kind of the current frame, and where its payload starts in its message (bytes).
    frame_kind: u8,
    frame_begin: usize,
    /// The current frame's tag, and how many of its bytes are still to come (0: none).
    tag: [u8; TAG_BYTES],
    tag_left: usize,
}

impl Decoder {
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            max_frame,
            max_message: MAX_MESSAGE_BYTES,
            hdr: [0; HEADER_BYTES],
            hdr_fill: 0,
            frame_left: 0,
            frame_fin: false,
            frame_stream: 0,
            cur: [None, None],
            filled: 0,
            now: 0,
            hdr_time: 0,
            events: VecDeque::new(),
            failed: false,
            abort: None,
            opener: None,
            frame_kind: 0,
            frame_begin: 0,
            tag: [0; TAG_BYTES],
            tag_left: 0,
        }
    }

    /// Frames are sealed: authenticate and decrypt each with `opener`.
    pub fn sealed(mut self, opener: Opener) -> Self {
        self.opener = Some(opener);
        self
    }

    /// Refuse messages larger than `bytes` (default `MAX_MESSAGE_BYTES`).
    pub fn with_message_cap(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// The next decoded event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front().map(|(e, _)| e)
    }

    /// The next decoded event and, for a message, the time (as given to `set_time`) at
    /// which its first byte was fed; for other events the time of their frame's header.
    pub fn next_event_at(&mut self) -> Option<(Event, u64)> {
        self.events.pop_front()
    }

    /// The time at which the bytes about to be fed (or written by `direct`) arrived; the
    /// decoder only passes it on (a receiver emulating a link counts from a message's start).
    pub fn set_time(&mut self, t: u64) {
        self.now = t;
    }

    /// True while a message is partly received (a clean end of stream must not be here).
    pub fn mid_message(&self) -> bool {
        self.hdr_fill > 0
            || self.cur.iter().any(Option::is_some)
            || self.abort.is_some()
            || self.tag_left > 0
    }

    fn fail(&mut self, msg: String) -> Error {
        self.failed = true;
        Error::Frame(msg)
    }

    /// Validate a complete header and start its frame.
    fn start_frame(&mut self) -> Result<()> {
        let h = self.hdr;
        self.hdr_fill = 0;
        let len = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
        let (kind, flags) = (h[4], h[5]);
        let tag = Tag(u64::from_le_bytes(h[8..].try_into().unwrap()));
        if h[6] != 0 || h[7] != 0 || flags & !(FLAG_FIN | FLAG_BULK) != 0 {
            return Err(self.fail(format!(
                "malformed frame header (flags {flags:#x}, reserved {:#x} {:#x})",
                h[6], h[7]
            )));
        }
        match kind {
            KIND_ABORT => {
                if !(4..=MAX_ABORT_BYTES).contains(&len) || flags != 0 || tag.0 != 0 {
                    return Err(self.fail("malformed abort frame".into()));
                }
                // Half-received messages are dropped: the sender stopped mid-way.
                self.cur = [None, None];
                self.abort = Some(Vec::with_capacity(len));
                self.frame_left = len;
                self.frame_kind = KIND_ABORT;
                Ok(())
            }
            KIND_BYE => {
                if len != 0 || flags != 0 || tag.0 != 0 {
                    return Err(self.fail("malformed bye frame".into()));
                }
                if let Some((t, _, _)) = self.cur.iter().flatten().next() {
                    return Err(self.fail(format!("bye frame in the middle of message {:#x}", t.0)));
                }
                self.frame_kind = KIND_BYE;
                self.payload_done();
                Ok(())
            }
            KIND_HEARTBEAT => {
                if len != 0 || flags != 0 || tag.0 != 0 {
                    return Err(self.fail("malformed heartbeat frame".into()));
                }
                // Messages in progress stay as they are: a heartbeat may come between
                // their frames.
                self.frame_kind = KIND_HEARTBEAT;
                self.payload_done();
                Ok(())
            }
            KIND_DATA => {
                if len > self.max_frame {
                    return Err(self.fail(format!(
                        "frame of {len} bytes exceeds the cap of {} bytes",
                        self.max_frame
                    )));
                }
                if !len.is_multiple_of(8) {
                    return Err(self.fail(format!(
                        "data frame of {len} bytes is not a whole number of words"
                    )));
                }
                let s = usize::from(flags & FLAG_BULK != 0);
                let what = ["message", "bulk message"][s];
                match &self.cur[s] {
                    Some((t, _, _)) if *t != tag => {
                        return Err(self.fail(format!(
                            "frame of tag {:#x} interleaved into {what} {:#x}",
                            tag.0, t.0
                        )))
                    }
                    Some((_, buf, _)) if (8 * buf.len() + len) as u64 > self.max_message => {
                        return Err(self.fail(format!(
                            "{what} {:#x} exceeds the cap of {} bytes",
                            tag.0, self.max_message
                        )))
                    }
                    Some(_) => {}
                    None if len as u64 > self.max_message => {
                        return Err(self.fail(format!(
                            "{what} {:#x} exceeds the cap of {} bytes",
                            tag.0, self.max_message
                        )))
                    }
                    None => self.cur[s] = Some((tag, Vec::new(), self.hdr_time)),
                }
                self.frame_stream = s;
                self.frame_kind = KIND_DATA;
                let buf = &mut self.cur[s].as_mut().unwrap().1;
                // Room for this frame only after the header passed every check, so a peer
                // can make us reserve at most one capped frame ahead of its data. The
                // room stays uninitialised until the payload is written into it.
                buf.reserve(len / 8);
                self.filled = buf.len() * 8;
                self.frame_begin = self.filled;
                self.frame_left = len;
                self.frame_fin = flags & FLAG_FIN != 0;
                if len == 0 {
                    self.payload_done();
                }
                Ok(())
            }
            k => Err(self.fail(format!("unknown frame kind {k}"))),
        }
    }

    /// The current frame's payload is all here: its tag comes next on a sealed channel,
    /// otherwise the frame is complete.
    fn payload_done(&mut self) {
        if self.opener.is_some() {
            self.tag_left = TAG_BYTES;
        } else {
            self.finish_frame();
        }
    }

    /// The sealed frame's tag is here: authenticate and decrypt the frame, then complete it.
    fn open_frame(&mut self) -> Result<()> {
        let opener = self.opener.as_mut().expect("tags only on sealed channels");
        let hdr = self.hdr;
        let ok = match self.frame_kind {
            KIND_DATA => {
                let buf = &mut self.cur[self.frame_stream].as_mut().unwrap().1;
                // SAFETY: every byte up to `filled` was written (see `end_frame`).
                unsafe { buf.set_len(self.filled / 8) };
                // SAFETY: u64 words viewed as their bytes (no padding; any byte is valid).
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, buf.len() * 8)
                };
                opener.open(&hdr, &mut bytes[self.frame_begin..self.filled], &self.tag)
            }
            KIND_ABORT => opener.open(&hdr, self.abort.as_mut().unwrap(), &self.tag),
            _ => opener.open(&hdr, &mut [], &self.tag),
        };
        if !ok {
            return Err(self.fail(
                "frame failed authentication (changed, replayed, reordered or injected on the way, or another key)".into(),
            ));
        }
        self.finish_frame();
        Ok(())
    }

    /// The current frame is complete (and authentic): emit what it finishes.
    fn finish_frame(&mut self) {
        match self.frame_kind {
            KIND_DATA => self.end_frame(),
            KIND_BYE => self.events.push_back((Event::Bye, self.hdr_time)),
            KIND_HEARTBEAT => self.events.push_back((Event::Heartbeat, self.hdr_time)),
            _ => {
                let a = self.abort.take().unwrap();
                let ev = Event::Abort {
                    blame: u32::from_le_bytes(a[..4].try_into().unwrap()),
                    // A peer's words reach our terminal and logs: no control
                    // characters (escapes, newlines that forge log lines).
                    reason: sanitize(&String::from_utf8_lossy(&a[4..])),
                };
                self.events.push_back((ev, self.hdr_time));
            }
        }
    }

    fn end_frame(&mut self) {
        let s = self.frame_stream;
        let buf = &mut self.cur[s].as_mut().unwrap().1;
        debug_assert_eq!(self.filled % 8, 0);
        // SAFETY: every byte up to `filled` was written by `feed` or reported written by
        // `advance_direct`, and `filled` is within the capacity reserved for the frame.
        unsafe { buf.set_len(self.filled / 8) };
        if self.frame_fin {
            let (tag, mut buf, t0) = self.cur[s].take().unwrap();
            if cfg!(target_endian = "big") {
                buf.iter_mut().for_each(|w| *w = u64::from_le(*w));
            }
            let ev = if s == 1 {
                Event::Bulk(tag, buf)
            } else {
                Event::Msg(tag, buf)
            };
            self.events.push_back((ev, t0));
            self.filled = 0;
        }
    }

    /// The rest of the current frame's payload as writable (uninitialised) bytes, when at
    /// least `min` bytes remain: the I/O thread receives payloads straight into the message.
    pub fn direct(&mut self, min: usize) -> Option<&mut [MaybeUninit<u8>]> {
        if self.failed || self.abort.is_some() || self.frame_left < min.max(1) {
            return None;
        }
        let buf = &mut self.cur[self.frame_stream].as_mut()?.1;
        let off = self.filled - buf.len() * 8;
        let left = self.frame_left;
        let spare = buf.spare_capacity_mut();
        // SAFETY: a MaybeUninit<u64> region viewed as MaybeUninit<u8> of 8x the length.
        let bytes: &mut [MaybeUninit<u8>] = unsafe {
            std::slice::from_raw_parts_mut(
                spare.as_mut_ptr() as *mut MaybeUninit<u8>,
                spare.len() * 8,
            )
        };
        Some(&mut bytes[off..off + left])
    }

    /// `n` bytes were written at the start of the slice returned by `direct`.
    ///
    /// # Safety
    /// The caller must have initialised those `n` bytes.
    pub unsafe fn advance_direct(&mut self, n: usize) {
        assert!(n <= self.frame_left);
        self.filled += n;
        self.frame_left -= n;
        if self.frame_left == 0 {
            self.payload_done();
        }
    }

    /// Consume `input` entirely; complete messages become events.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<()> {
        if self.failed {
            return Err(Error::Frame("stream already failed".into()));
        }
        while !input.is_empty() {
            if self.tag_left > 0 {
                let fill = TAG_BYTES - self.tag_left;
                let take = self.tag_left.min(input.len());
                self.tag[fill..fill + take].copy_from_slice(&input[..take]);
                self.tag_left -= take;
                input = &input[take..];
                if self.tag_left == 0 {
                    self.open_frame()?;
                }
            } else if self.frame_left == 0 {
                if self.hdr_fill == 0 {
                    self.hdr_time = self.now;
                }
                let take = (HEADER_BYTES - self.hdr_fill).min(input.len());
                self.hdr[self.hdr_fill..self.hdr_fill + take].copy_from_slice(&input[..take]);
                self.hdr_fill += take;
                input = &input[take..];
                if self.hdr_fill == HEADER_BYTES {
                    self.start_frame()?;
                }
            } else if let Some(a) = self.abort.as_mut() {
                let take = self.frame_left.min(input.len());
                a.extend_from_slice(&input[..take]);
                input = &input[take..];
                self.frame_left -= take;
                if self.frame_left == 0 {
                    self.payload_done();
                }
            } else {
                let dst = self.direct(1).unwrap();
                let take = dst.len().min(input.len());
                // SAFETY: `dst` has at least `take` bytes and cannot overlap `input`.
                unsafe {
                    std::ptr::copy_nonoverlapping(input.as_ptr(), dst.as_mut_ptr() as *mut u8, take)
                };
                input = &input[take..];
                // SAFETY: the `take` bytes were just written.
                unsafe { self.advance_direct(take) };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_across_frames_in_any_split() {
        let data: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let bytes = encode_message(Tag(42), &data, 64);
        for split in [1, 7, 16, 17, 100, bytes.len()] {
            let mut d = Decoder::new(64);
            for c in bytes.chunks(split) {
                d.feed(c).unwrap();
            }
            assert_eq!(d.next_event(), Some(Event::Msg(Tag(42), data.clone())));
            assert_eq!(d.next_event(), None);
            assert!(!d.mid_message());
        }
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut d = Decoder::new(1024);
        let h = header(KIND_DATA, FLAG_FIN, u32::MAX as usize & !7, Tag(1));
        match d.feed(&h) {
            Err(Error::Frame(m)) => assert!(m.contains("exceeds the cap"), "{m}"),
            other => panic!("expected a frame error, got {other:?}"),
        }
    }

    #[test]
    fn abort_frame_carries_blame_and_a_capped_reason() {
        let long = "é".repeat(2000);
        let bytes = abort_frame(2, &long);
        assert!(bytes.len() <= HEADER_BYTES + MAX_ABORT_BYTES);
        let mut d = Decoder::new(64);
        for c in bytes.chunks(5) {
            d.feed(c).unwrap();
        }
        match d.next_event() {
            Some(Event::Abort { blame: 2, reason }) => {
                assert!(reason.len() <= MAX_ABORT_BYTES - 4 && reason.chars().all(|c| c == 'é'))
            }
            other => panic!("expected an abort, got {other:?}"),
        }
    }

    #[test]
    fn empty_message_is_one_fin_frame() {
        let bytes = encode_message(Tag(3), &[], 64);
        assert_eq!(bytes.len(), HEADER_BYTES);
        let mut d = Decoder::new(64);
        d.feed(&bytes).unwrap();
        assert_eq!(d.next_event(), Some(Event::Msg(Tag(3), vec![])));
    }

    /// Every frame of `bytes` (a concatenation of whole frames), as byte ranges.
    fn frames(bytes: &[u8]) -> Vec<&[u8]> {
        let mut out = vec![];
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            out.push(&rest[..HEADER_BYTES + len]);
            rest = &rest[HEADER_BYTES + len..];
        }
        out
    }

    fn frame_error(d: &mut Decoder, bytes: &[u8]) -> String {
        match d.feed(bytes) {
            Err(Error::Frame(m)) => m,
            other => panic!("expected a frame error, got {other:?}"),
        }
    }

    #[test]
    fn bulk_frames_interleave_with_ordinary_messages_in_any_split() {
        // A 3-frame bulk message with an ordinary message (itself 2 frames), an empty one
        // and a one-frame one between its frames; each stream completes on its own FIN.
        let bulk: Vec<u64> = (0..20u64).map(|i| i * 7 + 1).collect();
        let b = encode_bulk_message(Tag(9), &bulk, 64);
        let bf = frames(&b);
        assert_eq!(bf.len(), 3);
        let m1: Vec<u64> = (0..12).collect();
        let m1b = encode_message(Tag(1), &m1, 64);
        let m1f = frames(&m1b);
        let m2b = encode_message(Tag(2), &[], 64);
        let m3b = encode_message(Tag(3), &[5], 64);
        let stream: Vec<u8> = [bf[0], m1f[0], bf[1], m1f[1], &m2b, bf[2], &m3b].concat();
        for split in [1, 5, 16, 23, 64, stream.len()] {
            let mut d = Decoder::new(64);
            let mut got = vec![];
            for (i, c) in stream.chunks(split).enumerate() {
                d.set_time(i as u64);
                d.feed(c).unwrap();
                while let Some(e) = d.next_event_at() {
                    got.push(e);
                }
            }
            let evs: Vec<&Event> = got.iter().map(|(e, _)| e).collect();
            assert_eq!(
                evs,
                [
                    &Event::Msg(Tag(1), m1.clone()),
                    &Event::Msg(Tag(2), vec![]),
                    &Event::Bulk(Tag(9), bulk.clone()),
                    &Event::Msg(Tag(3), vec![5]),
                ]
            );
            // Each message is stamped with the feed its first byte came in.
            let at = |off: usize| (off / split) as u64;
            let off_m1 = bf[0].len();
            assert_eq!(got[0].1, at(off_m1));
            assert_eq!(got[2].1, at(0));
            assert_eq!(got[3].1, at(stream.len() - m3b.len()));
            assert!(!d.mid_message());
        }
    }

    #[test]
    fn malformed_bulk_frames_are_refused() {
        let bulk = encode_bulk_message(Tag(9), &[1; 16], 64);
        let first = frames(&bulk)[0];
        // Unknown flag bits.
        let mut d = Decoder::new(64);
        let m = frame_error(&mut d, &header(KIND_DATA, FLAG_FIN | 4, 8, Tag(1)));
        assert!(m.contains("malformed frame header"), "{m}");
        // A bulk frame of another tag while a bulk message is in progress.
        let mut d = Decoder::new(64);
        d.feed(first).unwrap();
        let m = frame_error(&mut d, &header(KIND_DATA, FLAG_BULK | FLAG_FIN, 8, Tag(8)));
        assert!(m.contains("interleaved into bulk message 0x9"), "{m}");
        // An ordinary frame of another tag into an ordinary message is still refused, even
        // with bulk frames between the two.
        let mut d = Decoder::new(64);
        d.feed(&header(KIND_DATA, 0, 8, Tag(1))).unwrap();
        d.feed(&[0; 8]).unwrap();
        d.feed(first).unwrap();
        let m = frame_error(&mut d, &header(KIND_DATA, FLAG_FIN, 8, Tag(2)));
        assert!(m.contains("interleaved into message 0x1"), "{m}");
        // A goodbye while a bulk message is unfinished.
        let mut d = Decoder::new(64);
        d.feed(first).unwrap();
        let m = frame_error(&mut d, &header(KIND_BYE, 0, 0, Tag(0)));
        assert!(m.contains("bye frame in the middle of message 0x9"), "{m}");
        // BULK only means something on data frames.
        let mut d = Decoder::new(64);
        let m = frame_error(&mut d, &header(KIND_BYE, FLAG_BULK, 0, Tag(0)));
        assert!(m.contains("malformed bye"), "{m}");
        let mut d = Decoder::new(64);
        let m = frame_error(&mut d, &header(KIND_ABORT, FLAG_BULK, 4, Tag(0)));
        assert!(m.contains("malformed abort"), "{m}");
        // The frame cap and whole words hold for bulk frames too.
        let mut d = Decoder::new(64);
        let m = frame_error(&mut d, &header(KIND_DATA, FLAG_BULK, 72, Tag(1)));
        assert!(m.contains("exceeds the cap"), "{m}");
        let mut d = Decoder::new(64);
        let m = frame_error(&mut d, &header(KIND_DATA, FLAG_BULK, 12, Tag(1)));
        assert!(m.contains("whole number of words"), "{m}");
        // A failed stream stays failed.
        assert!(d.feed(&[0]).is_err());
    }

    #[test]
    fn abort_drops_both_half_received_messages() {
        let bulk = encode_bulk_message(Tag(9), &[1; 16], 64);
        let mut d = Decoder::new(64);
        d.feed(frames(&bulk)[0]).unwrap();
        d.feed(&header(KIND_DATA, 0, 8, Tag(1))).unwrap();
        d.feed(&[0; 8]).unwrap();
        assert!(d.mid_message());
        d.feed(&abort_frame(0, "stop")).unwrap();
        assert!(matches!(
            d.next_event(),
            Some(Event::Abort { blame: 0, .. })
        ));
        assert!(!d.mid_message());
        // The tags are free again.
        d.feed(&encode_bulk_message(Tag(9), &[2], 64)).unwrap();
        assert_eq!(d.next_event(), Some(Event::Bulk(Tag(9), vec![2])));
    }

    #[test]
    fn abort_reasons_lose_control_characters_and_bidi_overrides() {
        let evil = "stop\x1b[2J\r\nmpc-pipe: error: party 9 \u{202e}lied\u{9b}";
        let mut d = Decoder::new(1 << 10);
        d.feed(&abort_frame(1, evil)).unwrap();
        let Some(Event::Abort { reason, .. }) = d.next_event() else {
            panic!("expected an abort")
        };
        assert!(
            !reason.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{reason:?}"
        );
        assert_eq!(
            reason,
            "stop\\u{1b}[2J\\u{d}\\u{a}mpc-pipe: error: party 9 \\u{202e}lied\\u{9b}"
        );
        assert_eq!(sanitize("plain text, ünïcode"), "plain text, ünïcode");
    }

    #[test]
    fn heartbeats_between_any_frames_leave_messages_intact_plain_and_sealed() {
        // A 2-frame message and a 2-frame bulk message with a heartbeat before, between
        // and after every frame; on a sealed channel each heartbeat is a sealed frame.
        let m: Vec<u64> = (0..12).collect();
        let mb = encode_message(Tag(1), &m, 64);
        let b: Vec<u64> = (100..112).collect();
        let bb = encode_bulk_message(Tag(2), &b, 64);
        let (mf, bf) = (frames(&mb), frames(&bb));
        let hb = heartbeat_frame();
        let plain: Vec<&[u8]> = vec![&hb, mf[0], &hb, bf[0], &hb, mf[1], &hb, bf[1], &hb];
        let want = [
            Event::Heartbeat,
            Event::Heartbeat,
            Event::Heartbeat,
            Event::Msg(Tag(1), m.clone()),
            Event::Heartbeat,
            Event::Bulk(Tag(2), b.clone()),
            Event::Heartbeat,
        ];
        let key = [9u8; 32];
        let mut sealer = crate::transport::seal::Sealer::new(&key);
        let sealed: Vec<Vec<u8>> = plain
            .iter()
            .map(|f| {
                let mut w = f.to_vec();
                sealer.seal(&mut w, HEADER_BYTES);
                w
            })
            .collect();
        for (wire, is_sealed) in [(plain.concat(), false), (sealed.concat(), true)] {
            for split in [1, 7, 16, wire.len()] {
                let mut d = Decoder::new(64);
                if is_sealed {
                    d = d.sealed(Opener::new(&key));
                }
                for c in wire.chunks(split) {
                    d.feed(c).unwrap();
                }
                let got: Vec<Event> = std::iter::from_fn(|| d.next_event()).collect();
                assert_eq!(got, want);
                assert!(!d.mid_message());
            }
        }
        // A heartbeat carries nothing: a length, flags or a tag are refused.
        for h in [
            header(KIND_HEARTBEAT, 0, 8, Tag(0)),
            header(KIND_HEARTBEAT, FLAG_FIN, 0, Tag(0)),
            header(KIND_HEARTBEAT, 0, 0, Tag(3)),
        ] {
            let m = frame_error(&mut Decoder::new(64), &h);
            assert!(m.contains("malformed heartbeat"), "{m}");
        }
    }

    #[test]
    fn a_message_over_the_message_cap_is_refused_from_the_frame_that_crosses_it() {
        let mut d = Decoder::new(64).with_message_cap(128);
        let ok = encode_message(Tag(1), &[7; 16], 64);
        d.feed(&ok).unwrap();
        assert!(matches!(d.next_event(), Some(Event::Msg(Tag(1), _))));
        let e = frame_error(&mut d, &encode_message(Tag(2), &[7; 17], 64));
        assert!(e.contains("exceeds the cap of 128 bytes"), "{e}");
        let mut d = Decoder::new(1 << 10).with_message_cap(64);
        let e = frame_error(&mut d, &header(KIND_DATA, FLAG_FIN, 72, Tag(3)));
        assert!(e.contains("exceeds the cap of 64 bytes"), "{e}");
    }
}
