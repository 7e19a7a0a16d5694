//! The secure channel's record layer: after the handshake every TCP frame is sealed with
//! AEGIS-256X4 under a key of its direction. Depends on the `aegis` crate only; pure (no
//! I/O), so it is tested on byte strings.
//!
//! Why an AEAD keyed from our own handshake rather than TLS or Noise: the handshake already
//! authenticates both parties with the pre-shared session key over fresh nonces, so what is
//! missing is only the record protection.
//!
//! Why AEGIS-256X4 (draft-irtf-cfrg-aegis-aead; 256-bit key and nonce, 128-bit tag, built
//! on the AES round function) and not AES-256-GCM: every opened share crosses the channel,
//! a 2-party VGG16 seals and opens 4.5 GB per party, and the cipher competes with the
//! GEMMs for the same two cores. On this VM (one core, 64 MiB buffers, out of cache)
//! `ring`'s AES-256-GCM (the AEAD under rustls, VAES-AVX2 assembly) sealed 9.3 GB/s, and
//! 6.2 GB/s with the copy into the frame buffer it needs; libaegis's AEGIS-256X4
//! (run-time dispatch to VAES-AVX512, VAES-AVX2 or AES-NI) 27 GB/s, the memory's speed, and
//! it encrypts out of place, so the copy goes. Sealed channels cost VGG16 11-15% of its
//! online time with AES-GCM (results/security/README.md) against the issue's 10% budget.
//!
//! ```text
//!   key(A -> B) = HMAC-SHA256(session key, "mpc-pipe channel v2" | hello_A | hello_B)
//!   frame      = header (16 bytes, in clear, authenticated as associated data)
//!                | payload encrypted | 16-byte tag
//!   nonce      = frame counter of the direction (u64 LE) | 24 zero bytes
//! ```
//!
//! Both hellos carry fresh nonces, so every connection has fresh keys and counters start at
//! 0. The receiver expects the next counter: a frame replayed, reordered, dropped, injected
//! or changed fails its tag, and the connection is dropped. The header stays in clear so the
//! decoder applies its length caps before it reserves anything.

use aegis::aegis256x4::Aegis256X4;

/// Bytes of the authentication tag after each sealed frame.
pub const TAG_BYTES: usize = 16;

type Cipher = Aegis256X4<TAG_BYTES>;

/// The nonce of frame `counter`: unique per key, as each direction's key seals each
/// counter once.
fn nonce(counter: u64) -> [u8; 32] {
    let mut n = [0u8; 32];
    n[..8].copy_from_slice(&counter.to_le_bytes());
    n
}

/// The sending half of a channel.
pub struct Sealer {
    key: [u8; 32],
    counter: u64,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Sealer {
            key: *key,
            counter: 0,
        }
    }

    /// The next frame's cipher; frames must be sealed in the order they go on the wire.
    fn next(&mut self) -> Cipher {
        let c = Cipher::new(&self.key, &nonce(self.counter));
        // 2^64 frames would take centuries at any speed; the counter never wraps.
        self.counter += 1;
        c
    }

    /// Seal the frame in `wire` (a header of `header_bytes`, then its payload) in place:
    /// encrypt the payload, authenticate the header with it, append the tag.
    pub fn seal(&mut self, wire: &mut Vec<u8>, header_bytes: usize) {
        let (hdr, payload) = wire.split_at_mut(header_bytes);
        let tag = self.next().encrypt_in_place(payload, hdr);
        wire.extend_from_slice(&tag);
    }

    /// Seal the frame `hdr` | `payload` into `wire` (replacing what it held) in one pass:
    /// the payload is encrypted out of place, so the caller's buffer (a message shared
    /// with the engine) is only read. `wire` keeps its capacity from frame to frame, and
    /// is zero-filled only where it grows.
    pub fn seal_into(&mut self, hdr: &[u8], payload: &[u8], wire: &mut Vec<u8>) {
        let (h, n) = (hdr.len(), payload.len());
        wire.truncate(h + n);
        wire.resize(h + n, 0);
        wire[..h].copy_from_slice(hdr);
        let mut enc = self.next().encryptor(hdr);
        enc.update(payload, &mut wire[h..]);
        let tag = enc.finalize();
        wire.extend_from_slice(&tag);
    }
}

/// The receiving half of a channel.
pub struct Opener {
    key: [u8; 32],
    counter: u64,
}

impl Opener {
    pub fn new(key: &[u8; 32]) -> Self {
        Opener {
            key: *key,
            counter: 0,
        }
    }

    /// Check the next frame's `tag` over its `header` and encrypted `payload`, and decrypt
    /// the payload in place (erased if the check fails). False if anything about the frame
    /// is not what was sealed as the next frame of this direction.
    pub fn open(&mut self, header: &[u8], payload: &mut [u8], tag: &[u8; TAG_BYTES]) -> bool {
        let ok = Cipher::new(&self.key, &nonce(self.counter))
            .decrypt_in_place(payload, tag, header)
            .is_ok();
        self.counter += 1;
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(s: &mut Sealer, hdr: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut w = hdr.to_vec();
        w.extend_from_slice(payload);
        s.seal(&mut w, 4);
        w
    }

    fn open(o: &mut Opener, w: &[u8]) -> Option<Vec<u8>> {
        let (hdr, rest) = w.split_at(4);
        let (payload, tag) = rest.split_at(rest.len() - TAG_BYTES);
        let mut p = payload.to_vec();
        o.open(hdr, &mut p, tag.try_into().unwrap()).then_some(p)
    }

    #[test]
    fn frames_open_in_order_and_any_change_replay_or_reordering_is_refused() {
        let key = [7u8; 32];
        let mut s = Sealer::new(&key);
        let a = sealed(&mut s, b"hdr1", b"secret seed bytes");
        let b = sealed(&mut s, b"hdr2", b"more");
        // The payload is not in clear.
        assert!(!a.windows(6).any(|w| w == b"secret"));
        let mut o = Opener::new(&key);
        assert_eq!(open(&mut o, &a).unwrap(), b"secret seed bytes");
        assert_eq!(open(&mut o, &b).unwrap(), b"more");
        // Replay of the first frame, reordering, or one flipped bit anywhere: refused.
        let mut o = Opener::new(&key);
        assert!(open(&mut o, &b).is_none(), "reordered");
        let mut o = Opener::new(&key);
        open(&mut o, &a).unwrap();
        assert!(open(&mut o, &a).is_none(), "replayed");
        for bit in 0..8 * a.len() {
            let mut t = a.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&mut Opener::new(&key), &t).is_none(), "bit {bit}");
        }
        // Another key (the other direction, another connection): refused.
        assert!(open(&mut Opener::new(&[8u8; 32]), &a).is_none());
    }

    #[test]
    fn sealing_out_of_place_gives_the_in_place_bytes_whatever_the_buffer_held() {
        let key = [3u8; 32];
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 1) as u8).collect();
        let small = b"a short frame".to_vec();
        let (mut s_in, mut s_out) = (Sealer::new(&key), Sealer::new(&key));
        // One wire buffer reused: big, then small (it shrinks), then big (it grows).
        let mut wire = Vec::new();
        let mut o = Opener::new(&key);
        for payload in [&big, &small, &big] {
            let want = sealed(&mut s_in, b"head", payload);
            s_out.seal_into(b"head", payload, &mut wire);
            assert_eq!(wire, want);
            assert_eq!(open(&mut o, &wire).as_ref(), Some(payload));
        }
    }
}
