//! gRPC framing, `narun::wire::grpc`.
//!
//! - framed messages split at any DATA boundaries decode to the messages;
//! - on arbitrary bytes, the decoder agrees with a reference reader of the
//!   length-prefixed format, whatever the chunking: same messages, same
//!   error or leftover, never a panic;
//! - the `grpc-timeout` and `grpc-message` codecs round trip, and the
//!   protobuf string reader never panics.

use std::time::Duration;

use bytes::Bytes;
use narun::wire::grpc::{
    decode_message, encode_message, encode_timeout, frame, parse_timeout, proto_string_field,
    FrameDecoder, FrameError,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::harness::check;

/// What a decoder fed `chunks` gives: the messages, then the error that
/// stopped it or the result of `finish`.
fn drive(chunks: &[&[u8]], max: usize) -> (Vec<Bytes>, Result<(), FrameError>) {
    let mut decoder = FrameDecoder::new(max);
    let mut messages = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => return (messages, Err(e)),
            }
        }
    }
    let end = decoder.finish();
    (messages, end)
}

/// The length-prefixed message format, read in one go.
fn reference(mut bytes: &[u8], max: usize) -> (Vec<Bytes>, Result<(), FrameError>) {
    let mut messages = Vec::new();
    while bytes.len() >= 5 {
        match bytes[0] {
            0 => {}
            1 => return (messages, Err(FrameError::Compressed)),
            f => return (messages, Err(FrameError::Flag(f))),
        }
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if len > max {
            return (messages, Err(FrameError::TooLarge { len, max }));
        }
        let Some(message) = bytes.get(5..5 + len) else {
            break;
        };
        messages.push(Bytes::copy_from_slice(message));
        bytes = &bytes[5 + len..];
    }
    let end = if bytes.is_empty() {
        Ok(())
    } else {
        Err(FrameError::Truncated)
    };
    (messages, end)
}

/// `bytes` cut at the (sorted, deduplicated) `cuts`.
fn split<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in at {
        chunks.push(&bytes[from..cut]);
        from = cut;
    }
    chunks.push(&bytes[from..]);
    chunks
}

#[test]
fn framed_messages_survive_any_chunking() {
    let strategy = (
        vec(vec(any::<u8>(), 0..300), 0..8),
        vec(any::<Index>(), 0..12),
    );
    check(
        "wire_grpc::framed_messages_survive_any_chunking",
        256,
        strategy,
        |(messages, cuts)| {
            let stream: Vec<u8> = messages.iter().flat_map(|m| frame(m).to_vec()).collect();
            let max = messages.iter().map(Vec::len).max().unwrap_or(0);
            let (got, end) = drive(&split(&stream, &cuts), max);
            prop_assert_eq!(end, Ok(()));
            let got: Vec<Vec<u8>> = got.iter().map(|m| m.to_vec()).collect();
            prop_assert_eq!(got, messages);
            Ok(())
        },
    );
}

/// Mostly well-framed streams with damage, and random bytes.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let framed = (
        vec(vec(any::<u8>(), 0..40), 0..6),
        vec((any::<Index>(), any::<u8>()), 0..3),
        any::<Index>(),
    )
        .prop_map(|(messages, pokes, keep)| {
            let mut b: Vec<u8> = messages.iter().flat_map(|m| frame(m).to_vec()).collect();
            for (at, v) in pokes {
                if !b.is_empty() {
                    let i = at.index(b.len());
                    b[i] = v;
                }
            }
            let keep = keep.index(b.len() + 1).max(b.len().saturating_sub(3));
            b.truncate(keep);
            b
        });
    prop_oneof![3 => framed, 1 => vec(any::<u8>(), 0..64)]
}

#[test]
fn decoder_matches_the_reference_on_any_bytes_and_chunking() {
    let strategy = (
        stream_bytes(),
        vec(any::<Index>(), 0..12),
        prop_oneof![0usize..64, Just(usize::MAX), Just(u32::MAX as usize)],
    );
    check(
        "wire_grpc::decoder_matches_the_reference_on_any_bytes_and_chunking",
        512,
        strategy,
        |(bytes, cuts, max)| {
            let want = reference(&bytes, max);
            prop_assert_eq!(drive(&[&bytes], max), want.clone(), "whole");
            prop_assert_eq!(drive(&split(&bytes, &cuts), max), want, "chunked");
            Ok(())
        },
    );
}

#[test]
fn timeouts_round_trip_rounded_down() {
    let strategy = prop_oneof![
        any::<u64>().prop_map(Duration::from_nanos),
        (0u64..400_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        any::<(u64, u32)>().prop_map(|(s, n)| Duration::new(s, n % 1_000_000_000)),
    ];
    check(
        "wire_grpc::timeouts_round_trip_rounded_down",
        256,
        strategy,
        |d| {
            let text = encode_timeout(d);
            let back = parse_timeout(&text).ok_or_else(|| TestCaseError::fail(text.clone()))?;
            prop_assert!(back <= d, "{d:?} -> {text} -> {back:?}");
            // Less than one unit lost: the finest unit whose 8 digits hold
            // the value, so under 1/100,000 of it (unless capped at 99999999H).
            if d < Duration::from_secs(99_999_999 * 3600) {
                prop_assert!(
                    (d - back).as_nanos() * 100_000 <= d.as_nanos(),
                    "{d:?} -> {text} -> {back:?}"
                );
            }
            Ok(())
        },
    );
}

#[test]
fn timeout_parser_never_panics() {
    check(
        "wire_grpc::timeout_parser_never_panics",
        256,
        "[0-9HMSmun -]{0,12}",
        |text| {
            if let Some(d) = parse_timeout(&text) {
                prop_assert!((2..=9).contains(&text.len()));
                prop_assert!(d <= Duration::from_secs(99_999_999 * 3600));
            }
            Ok(())
        },
    );
}

#[test]
fn status_messages_round_trip() {
    check(
        "wire_grpc::status_messages_round_trip",
        256,
        any::<String>(),
        |msg| {
            let encoded = encode_message(&msg);
            prop_assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode_message(encoded.as_bytes()), msg);
            Ok(())
        },
    );
}

#[test]
fn status_message_decoder_never_panics() {
    check(
        "wire_grpc::status_message_decoder_never_panics",
        256,
        vec(any::<u8>(), 0..40),
        |raw| {
            decode_message(&raw);
            Ok(())
        },
    );
}

#[test]
fn proto_reader_never_panics() {
    let strategy = (
        prop_oneof![
            vec(any::<u8>(), 0..64),
            // A field-1 string with a lying length.
            (any::<u64>(), vec(any::<u8>(), 0..16)).prop_map(|(len, rest)| {
                let mut m = vec![0x0a];
                let mut v = len;
                while v >= 0x80 {
                    m.push(v as u8 | 0x80);
                    v >>= 7;
                }
                m.push(v as u8);
                m.extend(rest);
                m
            }),
        ],
        0u64..4,
    );
    check(
        "wire_grpc::proto_reader_never_panics",
        512,
        strategy,
        |(msg, field)| {
            if let Ok(Some(s)) = proto_string_field(&msg, field) {
                prop_assert!(s.len() <= msg.len());
            }
            Ok(())
        },
    );
}
