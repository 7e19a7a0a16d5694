//! One connection of the I/O thread: the socket, its frame decoder, its send queues (a
//! message being written frame by frame), and where it is in its life (`State`). Depends
//! on transport::frame, comm.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

use super::Shared;
use crate::comm::{PartyId, Payload, Tag};
use crate::transport::frame::{self, Decoder, FLAG_FIN, HEADER_BYTES, KIND_DATA};
use crate::transport::handshake::ChannelKeys;
use crate::transport::seal::{Opener, Sealer};

/// Payload remainders at least this big are read straight into the message.
pub(super) const DIRECT_MIN: usize = 16 << 10;
const STAGING_BYTES: usize = 256 << 10;

/// A message being written: its frames go out in order.
pub(super) struct OutMsg {
    pub(super) tag: Tag,
    pub(super) data: Payload,
    /// Next frame's first word, and bytes of the current frame (header + payload) written.
    pub(super) frame_start: usize,
    pub(super) frame_done: usize,
    /// The current frame is sealed in the channel's buffer: it has its counter and must
    /// go out before any other frame, even if none of its bytes is written yet.
    pub(super) sealed: bool,
}

/// The sending side of a sealed channel (`transport::seal`): the sealer and the wire bytes
/// of the one frame being written (a frame once begun is completed before any other).
pub(super) struct Channel {
    sealer: Sealer,
    wire: Vec<u8>,
}

impl Channel {
    pub(super) fn new(key: &[u8; 32]) -> Self {
        Channel {
            sealer: Sealer::new(key),
            wire: Vec::new(),
        }
    }

    /// Seal the frame `hdr` | `payload` into the wire buffer (one pass over the payload).
    fn seal(&mut self, hdr: &[u8], payload: &[u8]) {
        self.sealer.seal_into(hdr, payload, &mut self.wire);
    }
}

/// A control frame (goodbye, abort) queued for writing: its plaintext bytes, whether it is
/// sealed in the channel's buffer, and how many wire bytes are written.
pub(super) struct Control {
    plain: Vec<u8>,
    sealed: bool,
    done: usize,
}

impl Control {
    pub(super) fn new(plain: Vec<u8>) -> Self {
        Control {
            plain,
            sealed: false,
            done: 0,
        }
    }

    /// Begun: it must be completed before any other frame.
    pub(super) fn begun(&self) -> bool {
        self.sealed || self.done > 0
    }

    /// Write more of the frame; true once all of it is written.
    pub(super) fn write(
        &mut self,
        sock: &mio::net::TcpStream,
        chan: Option<&mut Channel>,
    ) -> io::Result<bool> {
        let wire: &[u8] = match chan {
            Some(ch) => {
                if !self.sealed {
                    let (hdr, payload) = self.plain.split_at(HEADER_BYTES);
                    ch.seal(hdr, payload);
                    self.sealed = true;
                }
                &ch.wire
            }
            None => &self.plain,
        };
        let k = (&*sock).write(&wire[self.done..])?;
        if k == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.done += k;
        Ok(self.done == wire.len())
    }
}

/// How far a write took a message.
#[derive(PartialEq, Eq)]
pub(super) enum Wrote {
    /// Part of a frame: the rest of it must follow before any other frame.
    Partial,
    Frame,
    Message,
}

impl OutMsg {
    pub(super) fn new(tag: Tag, data: Payload) -> Self {
        OutMsg {
            tag,
            data,
            frame_start: 0,
            frame_done: 0,
            sealed: false,
        }
    }

    /// The current frame is begun (sealed or partly written): it must be completed before
    /// any other frame.
    pub(super) fn mid_frame(&self) -> bool {
        self.sealed || self.frame_done > 0
    }

    /// Write more of the current frame (payload at most `max_frame` bytes; `flags` besides
    /// FIN). The frame is cut from what is left each time, so it is the same frame until
    /// it is complete.
    pub(super) fn write(
        &mut self,
        sock: &mio::net::TcpStream,
        max_frame: usize,
        flags: u8,
        chan: Option<&mut Channel>,
    ) -> io::Result<Wrote> {
        let (start, len, fin) = frame::frames_of(self.data.len() - self.frame_start, max_frame)
            .next()
            .unwrap();
        debug_assert_eq!(start, 0);
        let words = &self.data[self.frame_start..self.frame_start + len];
        let hdr = frame::header(
            KIND_DATA,
            flags | if fin { FLAG_FIN } else { 0 },
            len * 8,
            self.tag,
        );
        let payload = frame::words_as_bytes(words);
        let done = self.frame_done;
        let (k, total) = match chan {
            // Sealed: the frame is encrypted once, into the channel's buffer, when begun.
            Some(ch) => {
                if !self.sealed {
                    ch.seal(&hdr, &payload);
                    self.sealed = true;
                }
                ((&*sock).write(&ch.wire[done..])?, ch.wire.len())
            }
            None if done < HEADER_BYTES => (
                (&*sock).write_vectored(&[IoSlice::new(&hdr[done..]), IoSlice::new(&payload)])?,
                HEADER_BYTES + len * 8,
            ),
            None => (
                (&*sock).write(&payload[done - HEADER_BYTES..])?,
                HEADER_BYTES + len * 8,
            ),
        };
        if k == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.frame_done += k;
        if self.frame_done < total {
            return Ok(Wrote::Partial);
        }
        self.frame_start += len;
        self.frame_done = 0;
        self.sealed = false;
        Ok(if self.frame_start == self.data.len() {
            Wrote::Message
        } else {
            Wrote::Frame
        })
    }
}

/// What a connection has queued for writing.
pub(super) enum Outgoing {
    Msg(OutMsg),
    Bye(Control),
    Abort(Control),
    /// Queued only when nothing else is (see `Conn::heartbeat_due`).
    Heartbeat(Control),
}

pub(super) struct Conn {
    pub(super) sock: mio::net::TcpStream,
    pub(super) dec: Decoder,
    pub(super) staging: Vec<u8>,
    pub(super) out: VecDeque<Outgoing>,
    /// Background messages, written a frame at a time while `out` holds no message.
    pub(super) bulk: VecDeque<OutMsg>,
    /// Buffers of fully written messages, freed just before the thread sleeps: freeing a
    /// large buffer (munmap, TLB flush) would otherwise delay the next write.
    pub(super) sent: Vec<Payload>,
    /// The socket's send buffer is full: write again after its next writable event.
    /// Readiness, not a stage of the connection's life, so not part of `state`.
    pub(super) write_blocked: bool,
    pub(super) state: State,
    /// The sealed channel's sending side (None: plaintext channels).
    pub(super) chan: Option<Channel>,
    /// When we last wrote bytes to the socket (or the connection began).
    pub(super) last_write: Instant,
}

/// What we queue last before closing our side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Farewell {
    /// The goodbye after everything posted: the session ended cleanly.
    Bye,
    /// The abort frame after a failure: background messages are cut after the frame on
    /// the wire, and the peer drops what it half received.
    Abort,
}

/// Where a connection is in its life. Input and output end separately (a peer that said
/// goodbye may still need our last messages; after our goodbye its data may still come),
/// so each state says where both ends are:
///
/// ```text
///   Open{peer_bye, leaving} --input ends--> InputDone{leaving} --half-close--> Closed
///        |  half-close (our farewell written, queues empty)                    ^
///        v                                                                     |
///   HalfClosed{peer_bye} ------------------input ends--------------------------+
///   any state --send fails, or the peer breaks the protocol--> Failed
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Reading and writing. `peer_bye`: the peer said goodbye (only its close may follow);
    /// `leaving`: our farewell is queued behind the last of our data.
    Open {
        peer_bye: bool,
        leaving: Option<Farewell>,
    },
    /// The peer's input ended (it closed, aborted, or failed); we still write what we owe
    /// it (late posts to a peer that finished cleanly, then our farewell).
    InputDone { leaving: Option<Farewell> },
    /// Our farewell is written and our side half-closed; reading until the peer closes.
    HalfClosed { peer_bye: bool },
    /// Both ends finished.
    Closed,
    /// Sending failed, or the connection was dropped for breaking the protocol: nothing
    /// more either way.
    Failed,
}

impl State {
    /// Input may still arrive (the socket is read).
    pub(super) fn reading(self) -> bool {
        matches!(self, State::Open { .. } | State::HalfClosed { .. })
    }

    /// The peer said goodbye (while it is still read).
    pub(super) fn peer_bye(self) -> bool {
        matches!(
            self,
            State::Open { peer_bye: true, .. } | State::HalfClosed { peer_bye: true }
        )
    }

    /// Posts are still queued and written.
    pub(super) fn may_write(self) -> bool {
        self != State::Failed
    }

    /// Nothing more will happen on this connection.
    pub(super) fn finished(self) -> bool {
        matches!(self, State::Closed | State::Failed)
    }

    /// The farewell queued and not yet followed by the half-close, if any.
    pub(super) fn leaving(self) -> Option<Farewell> {
        match self {
            State::Open { leaving, .. } | State::InputDone { leaving } => leaving,
            _ => None,
        }
    }

    /// Our farewell may still be queued (none queued yet, and the connection works).
    pub(super) fn may_say_farewell(self) -> bool {
        matches!(
            self,
            State::Open { leaving: None, .. } | State::InputDone { leaving: None }
        )
    }

    /// The peer said goodbye.
    pub(super) fn with_peer_bye(self) -> State {
        match self {
            State::Open { leaving, .. } => State::Open {
                peer_bye: true,
                leaving,
            },
            State::HalfClosed { .. } => State::HalfClosed { peer_bye: true },
            s => s,
        }
    }

    /// Our farewell `f` is queued (see `may_say_farewell`).
    pub(super) fn with_farewell(self, f: Farewell) -> State {
        match self {
            State::Open {
                peer_bye,
                leaving: None,
            } => State::Open {
                peer_bye,
                leaving: Some(f),
            },
            State::InputDone { leaving: None } => State::InputDone { leaving: Some(f) },
            s => s,
        }
    }

    /// Our farewell is written and our side half-closed.
    pub(super) fn half_closed(self) -> State {
        match self {
            State::Open { peer_bye, .. } => State::HalfClosed { peer_bye },
            State::InputDone { .. } => State::Closed,
            s => s,
        }
    }

    /// The peer's input ended.
    pub(super) fn input_ended(self) -> State {
        match self {
            State::Open { leaving, .. } => State::InputDone { leaving },
            State::HalfClosed { .. } => State::Closed,
            s => s,
        }
    }
}

impl Conn {
    pub(super) fn new(
        sock: mio::net::TcpStream,
        max_frame: usize,
        max_message: u64,
        keys: Option<&ChannelKeys>,
    ) -> Self {
        let mut dec =
            Decoder::new(max_frame).with_message_cap(max_message.min(frame::MAX_MESSAGE_BYTES));
        if let Some(k) = keys {
            dec = dec.sealed(Opener::new(&k.recv));
        }
        Conn {
            chan: keys.map(|k| Channel::new(&k.send)),
            sock,
            dec,
            staging: vec![0; STAGING_BYTES],
            out: VecDeque::new(),
            bulk: VecDeque::new(),
            sent: Vec::new(),
            write_blocked: false,
            state: State::Open {
                peer_bye: false,
                leaving: None,
            },
            last_write: Instant::now(),
        }
    }

    /// When a heartbeat is due on this connection if nothing else is written first; None
    /// while one would be pointless: something is queued (it goes out instead, or the
    /// socket is full and a heartbeat would wait behind it too), or the connection is
    /// ending (our farewell is queued, or the peer said goodbye and waits for nothing).
    pub(super) fn heartbeat_due(&self, interval: Duration) -> Option<Instant> {
        let idle = matches!(
            self.state,
            State::Open {
                peer_bye: false,
                leaving: None
            }
        ) && self.out.is_empty()
            && self.bulk.is_empty();
        idle.then(|| self.last_write + interval)
    }
}

/// Move what was posted to `p` into its connection's send queues.
pub(super) fn take_posts(sh: &Shared, p: PartyId, c: &mut Conn) {
    while let Some((tag, data)) = sh.outq[p].pop() {
        if c.state.may_write() {
            c.out.push_back(Outgoing::Msg(OutMsg::new(tag, data)));
        }
    }
    while let Some((tag, data)) = sh.bulkq[p].pop() {
        if c.state.may_write() {
            c.bulk.push_back(OutMsg::new(tag, data));
        }
    }
}
