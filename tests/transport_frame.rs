//! The TCP frame decoder against its wire format: fuzzed with random byte strings (it must
//! never panic, and may only fail with a frame error), and round trips of random messages
//! cut into frames and fed in random splits, ordinary and bulk frames interleaved.

use mpc_pipe::comm::Tag;
use mpc_pipe::transport::frame::{
    encode_bulk_message, encode_message, header, Decoder, Event, FLAG_BULK, FLAG_FIN, HEADER_BYTES,
    KIND_BYE, KIND_DATA,
};
use mpc_pipe::Error;
use proptest::prelude::*;

/// Feed `bytes` in pieces of the given sizes; returns the events or the first error.
fn decode(cap: usize, bytes: &[u8], splits: &[usize]) -> Result<Vec<Event>, Error> {
    let mut d = Decoder::new(cap);
    let mut out = vec![];
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let k = splits
            .get(i)
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        i += 1;
        d.feed(&rest[..k])?;
        rest = &rest[k..];
        while let Some(e) = d.next_event() {
            out.push(e);
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_and_fail_only_with_frame_errors(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        splits in proptest::collection::vec(1usize..64, 0..20),
        cap in 0usize..512,
    ) {
        match decode(cap, &bytes, &splits) {
            Ok(events) => {
                // Whatever decoded must respect the cap per frame: a message of w words
                // needs at least ceil(8w / cap) frames, each with a 16-byte header.
                let mut used = 0usize;
                for e in &events {
                    if let Event::Msg(_, data) | Event::Bulk(_, data) = e {
                        let frames = if cap < 8 { 1 } else { (8 * data.len()).div_ceil(cap).max(1) };
                        used += frames * HEADER_BYTES + 8 * data.len();
                        prop_assert!(cap >= 8 || data.is_empty());
                    } else {
                        used += HEADER_BYTES;
                    }
                }
                prop_assert!(used <= bytes.len());
            }
            Err(Error::Frame(_)) => {}
            Err(e) => prop_assert!(false, "unexpected error kind {e:?}"),
        }
    }

    #[test]
    fn random_headers_with_valid_shape_are_checked_against_the_cap(
        len in any::<u32>(), kind in any::<u8>(), flags in any::<u8>(), tag in any::<u64>(),
    ) {
        let cap = 1 << 12;
        let mut h = [0u8; HEADER_BYTES];
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4] = kind;
        h[5] = flags;
        h[8..].copy_from_slice(&tag.to_le_bytes());
        let mut d = Decoder::new(cap);
        let r = d.feed(&h);
        let valid_data = kind == KIND_DATA && flags & !(FLAG_FIN | FLAG_BULK) == 0
            && (len as usize) <= cap && len % 8 == 0;
        let valid_bye = kind == KIND_BYE && flags == 0 && len == 0 && tag == 0;
        prop_assert_eq!(r.is_ok(), valid_data || valid_bye);
    }

    #[test]
    fn messages_round_trip_in_any_split_and_frame_size(
        msgs in proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec(any::<u64>(), 0..300)), 1..6),
        cap_words in 1usize..100,
        splits in proptest::collection::vec(1usize..700, 0..40),
    ) {
        let cap = cap_words * 8;
        let mut bytes = vec![];
        for (t, data) in &msgs {
            bytes.extend(encode_message(Tag(*t), data, cap));
        }
        bytes.extend(header(KIND_BYE, 0, 0, Tag(0)));
        let events = decode(cap, &bytes, &splits).unwrap();
        let mut expect: Vec<Event> =
            msgs.iter().map(|(t, d)| Event::Msg(Tag(*t), d.clone())).collect();
        expect.push(Event::Bye);
        prop_assert_eq!(events, expect);
    }

    #[test]
    fn bulk_and_ordinary_frames_interleaved_at_random_round_trip(
        msgs in proptest::collection::vec(
            (any::<bool>(), any::<u64>(), proptest::collection::vec(any::<u64>(), 0..300)), 1..8),
        cap_words in 1usize..100,
        picks in proptest::collection::vec(any::<bool>(), 0..200),
        splits in proptest::collection::vec(1usize..700, 0..40),
    ) {
        // Each class's messages are sent in order, frame by frame; the two frame
        // sequences are merged at random. A message completes at its last frame.
        let cap = cap_words * 8;
        let mut seqs: [Vec<(Vec<u8>, Option<Event>)>; 2] = [vec![], vec![]];
        for (bulk, t, data) in &msgs {
            let bytes = if *bulk {
                encode_bulk_message(Tag(*t), data, cap)
            } else {
                encode_message(Tag(*t), data, cap)
            };
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                let (f, r) = rest.split_at(HEADER_BYTES + len);
                rest = r;
                let ev = rest.is_empty().then(|| if *bulk {
                    Event::Bulk(Tag(*t), data.clone())
                } else {
                    Event::Msg(Tag(*t), data.clone())
                });
                seqs[*bulk as usize].push((f.to_vec(), ev));
            }
        }
        let (mut bytes, mut expect) = (vec![], vec![]);
        let mut its = seqs.map(|s| s.into_iter().peekable());
        let mut picks = picks.into_iter();
        loop {
            let s = match (its[0].peek().is_some(), its[1].peek().is_some()) {
                (false, false) => break,
                (true, true) => picks.next().unwrap_or(false) as usize,
                (a, _) => (!a) as usize,
            };
            let (f, ev) = its[s].next().unwrap();
            bytes.extend(f);
            expect.extend(ev);
        }
        bytes.extend(header(KIND_BYE, 0, 0, Tag(0)));
        expect.push(Event::Bye);
        prop_assert_eq!(decode(cap, &bytes, &splits).unwrap(), expect);
    }
}

#[test]
fn interleaved_message_frames_are_refused() {
    let mut bytes = header(KIND_DATA, 0, 8, Tag(1)).to_vec();
    bytes.extend(7u64.to_le_bytes());
    bytes.extend(header(KIND_DATA, FLAG_FIN, 8, Tag(2)));
    bytes.extend(9u64.to_le_bytes());
    match decode(64, &bytes, &[]) {
        Err(Error::Frame(m)) => assert!(m.contains("interleaved"), "{m}"),
        other => panic!("expected a frame error, got {other:?}"),
    }
}

#[test]
fn oversized_header_is_refused_before_its_payload() {
    // Only the header arrives: the decoder must refuse it without waiting for (or
    // reserving) the 4 GiB it announces.
    let h = header(KIND_DATA, FLAG_FIN, 0xffff_fff8, Tag(5));
    match decode(1 << 20, &h, &[]) {
        Err(Error::Frame(m)) => assert!(m.contains("exceeds the cap"), "{m}"),
        other => panic!("expected a frame error, got {other:?}"),
    }
}
