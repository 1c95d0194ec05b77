//! Known-length BHTTP (RFC 9292 §3) written and read directly, without the
//! bhttp crate's intermediate `Message` (a `Vec` per method, path, field
//! name and value, and content): the per-request path of the gateway and of
//! consumers. Byte for byte what the crate writes, and the reader accepts a
//! subset of what the crate accepts, reading it identically: anything else
//! (indeterminate length, informational responses, a truncated section,
//! repeated `cookie` lines, which the crate joins, bad padding, malformed
//! varints) is left to the crate, so errors stay the crate's
//! (tests/props/wire_bhttp.rs compares both on generated and mutated
//! messages).

use std::ops::Range;

/// Bytes of the QUIC variable-length integer encoding of `v` (RFC 9000
/// §16); `v` below 2^62.
pub(super) fn varint_len(v: usize) -> usize {
    match v {
        0..=63 => 1,
        64..=16_383 => 2,
        16_384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Append `v` as a QUIC varint, in its shortest form (as the crate does).
pub(super) fn put_varint(out: &mut Vec<u8>, v: usize) {
    let v = v as u64;
    match varint_len(v as usize) {
        1 => out.push(v as u8),
        2 => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        4 => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// Append a length-prefixed byte string.
pub(super) fn put_vec(out: &mut Vec<u8>, v: &[u8]) {
    put_varint(out, v.len());
    out.extend_from_slice(v);
}

/// Encoded size of a length-prefixed byte string.
pub(super) fn vec_len(v: &[u8]) -> usize {
    varint_len(v.len()) + v.len()
}

/// The field lines of a section, (name, value) ranges of the input: on the
/// stack for the common message.
pub(super) type Lines = smallvec::SmallVec<[(Range<usize>, Range<usize>); 8]>;

/// A known-length message whose sections are ranges of the input.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Known {
    pub control: Control,
    /// Field lines of the header section: (name, value) ranges.
    pub header: Lines,
    pub content: Range<usize>,
    /// Field lines of the trailer section (empty when it is absent).
    pub trailer: Lines,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Control {
    Request {
        method: Range<usize>,
        authority: Range<usize>,
        path: Range<usize>,
    },
    /// A final status, 200..=599.
    Response(u16),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Option<usize> {
        let first = *self.buf.get(self.pos)?;
        let len = 1usize << (first >> 6);
        let bytes = self.buf.get(self.pos..self.pos + len)?;
        let mut v = u64::from(first & 0x3f);
        for b in &bytes[1..] {
            v = v << 8 | u64::from(*b);
        }
        self.pos += len;
        usize::try_from(v).ok()
    }

    fn vec(&mut self) -> Option<Range<usize>> {
        let len = self.varint()?;
        let end = self.pos.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        let r = self.pos..end;
        self.pos = end;
        Some(r)
    }

    /// A known-length field section: its lines, or `None` for what the
    /// crate reads differently or refuses.
    fn section(&mut self) -> Option<Lines> {
        let section = self.vec()?;
        let mut inner = Reader {
            buf: &self.buf[..section.end],
            pos: section.start,
        };
        let mut lines = Lines::new();
        let mut cookie = false;
        while !inner.at_end() {
            let name = inner.vec()?;
            let value = inner.vec()?;
            let n = &self.buf[name.clone()];
            if n.is_empty() {
                return None;
            }
            if n == b"cookie" {
                if cookie {
                    return None; // the crate joins them
                }
                cookie = true;
            }
            lines.push((name, value));
        }
        Some(lines)
    }
}

/// Read a known-length request or final response, or `None` to let the
/// crate read (or refuse) it.
pub(super) fn read(buf: &[u8]) -> Option<Known> {
    let mut r = Reader { buf, pos: 0 };
    let control = match r.varint()? {
        0 => {
            let method = r.vec()?;
            let _scheme = r.vec()?;
            let authority = r.vec()?;
            let path = r.vec()?;
            Control::Request {
                method,
                authority,
                path,
            }
        }
        1 => match r.varint()? {
            code @ 200..=599 => Control::Response(code as u16),
            _ => return None,
        },
        _ => return None,
    };
    let header = r.section()?;
    let content = r.vec()?;
    let trailer = if r.at_end() {
        Lines::new()
    } else {
        r.section()?
    };
    if buf[r.pos..].iter().any(|b| *b != 0) {
        return None;
    }
    Some(Known {
        control,
        header,
        content,
        trailer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_rfc_9000s() {
        let cases: [(usize, &[u8]); 7] = [
            (0, &[0]),
            (63, &[0x3f]),
            (64, &[0x40, 0x40]),
            (16_383, &[0x7f, 0xff]),
            (16_384, &[0x80, 0, 0x40, 0]),
            // RFC 9000 A.1's examples
            (494_878_333, &[0x9d, 0x7f, 0x3e, 0x7d]),
            (
                151_288_809_941_952_652,
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
            ),
        ];
        for (v, want) in cases {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            assert_eq!(ours, want, "{v}");
            assert_eq!(ours.len(), varint_len(v));
            let mut r = Reader { buf: &ours, pos: 0 };
            assert_eq!(r.varint(), Some(v));
            assert!(r.at_end());
        }
    }

    #[test]
    fn leaves_to_the_crate_what_it_reads_differently() {
        // indeterminate length, an informational status, repeated cookies,
        // a missing content section, non-zero padding
        let known = |status: u8, fields: &[(&[u8], &[u8])], tail: &[u8]| {
            let mut section = Vec::new();
            for (n, v) in fields {
                put_vec(&mut section, n);
                put_vec(&mut section, v);
            }
            let mut out = vec![1];
            put_varint(&mut out, usize::from(status) + 100);
            put_vec(&mut out, &section);
            out.extend_from_slice(tail);
            out
        };
        let ok = known(100, &[(b"a", b"1")], &[0]);
        assert!(read(&ok).is_some());
        assert!(read(&known(0, &[], &[0])).is_none(), "100 Continue");
        assert!(read(&known(100, &[(b"cookie", b"a"), (b"cookie", b"b")], &[0])).is_none());
        assert!(read(&known(100, &[], &[])).is_none(), "no content section");
        assert!(read(&known(100, &[], &[0, 0, 0, 5])).is_none(), "padding");
        assert!(
            read(&known(100, &[], &[0, 0, 0, 0])).is_some(),
            "zero padding"
        );
        assert!(read(&[3, 0x40, 200]).is_none(), "indeterminate");
    }
}
