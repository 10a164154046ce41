//! Frame Streams (fstrm), the framing dnstap travels in: data frames are
//! a 4-byte big-endian length and the payload; control frames start with
//! a zero length (the escape), then their own length, type and fields.
//!
//! - to a socket (bidirectional): READY → ACCEPT ← START → data … STOP → FINISH ←
//! - to a file (unidirectional): START, data …, STOP

use std::io::{self, Read, Write};

/// The only content type pzdns writes.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

pub const ACCEPT: u32 = 1;
pub const START: u32 = 2;
pub const STOP: u32 = 3;
pub const READY: u32 = 4;
pub const FINISH: u32 = 5;

/// The control field that carries a content type.
const FIELD_CONTENT_TYPE: u32 = 1;
/// Largest control frame read (libfstrm's own bound).
const MAX_CONTROL: usize = 512;

/// Writes a control frame of `kind`; READY, ACCEPT and START carry the
/// content type.
pub fn write_control(w: &mut impl Write, kind: u32) -> io::Result<()> {
    let with_type = matches!(kind, READY | ACCEPT | START);
    let body = 4 + if with_type { 8 + CONTENT_TYPE.len() } else { 0 };
    let mut f = Vec::with_capacity(8 + body);
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&(body as u32).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    if with_type {
        f.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        f.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        f.extend_from_slice(CONTENT_TYPE);
    }
    w.write_all(&f)?;
    w.flush()
}

/// A control frame read: its type, and whether it names our content type
/// (or names none, which means any).
#[derive(Debug, PartialEq, Eq)]
pub struct Control {
    pub kind: u32,
    pub takes_ours: bool,
}

/// Reads one control frame; anything else is an error.
pub fn read_control(r: &mut impl Read) -> io::Result<Control> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("Frame Streams: {what}"));
    let mut word = [0u8; 4];
    r.read_exact(&mut word)?;
    if word != [0; 4] {
        return Err(bad("a data frame where a control frame was expected"));
    }
    r.read_exact(&mut word)?;
    let len = u32::from_be_bytes(word) as usize;
    if !(4..=MAX_CONTROL).contains(&len) {
        return Err(bad("a control frame of an impossible length"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let kind = u32::from_be_bytes(body[..4].try_into().unwrap_or_default());
    let mut rest = &body[4..];
    let (mut named, mut ours) = (false, false);
    while rest.len() >= 8 {
        let field = u32::from_be_bytes(rest[..4].try_into().unwrap_or_default());
        let n = u32::from_be_bytes(rest[4..8].try_into().unwrap_or_default()) as usize;
        let Some(value) = rest.get(8..8 + n) else { return Err(bad("a control field longer than its frame")) };
        if field == FIELD_CONTENT_TYPE {
            named = true;
            ours |= value == CONTENT_TYPE;
        }
        rest = &rest[8 + n..];
    }
    Ok(Control { kind, takes_ours: ours || !named })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_round_trip() {
        let mut buf = Vec::new();
        write_control(&mut buf, READY).unwrap();
        write_control(&mut buf, STOP).unwrap();
        assert_eq!(&buf[..12], &[0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 4], "escape, length, READY");
        let mut r = &buf[..];
        assert_eq!(read_control(&mut r).unwrap(), Control { kind: READY, takes_ours: true });
        assert_eq!(read_control(&mut r).unwrap(), Control { kind: STOP, takes_ours: true });
        assert!(r.is_empty());
        let other = [0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, b'x'];
        assert_eq!(read_control(&mut &other[..]).unwrap(), Control { kind: ACCEPT, takes_ours: false });
        assert!(read_control(&mut &[0, 0, 0, 9, 1, 2][..]).is_err(), "a data frame");
    }
}
