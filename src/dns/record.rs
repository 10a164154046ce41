//! Records in wire form: what the snapshot and the cache store so that
//! answering is copying bytes, never encoding a hickory `Record` per query.

use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// Length of the uncompressed name at the start of `wire`.
pub fn name_len(wire: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        pos += 1 + len as usize;
        if len == 0 {
            break;
        }
    }
    pos.min(wire.len())
}

/// A record in wire form, owner name first, names in RDATA uncompressed
/// and in their own case, so the bytes can be copied into any message.
pub fn record_wire(rec: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut out);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    if rec.emit(&mut enc).is_err() {
        // Records are checked at load; one that cannot be encoded
        // (over-long RDATA) is left out of fast-path answers.
        out.clear();
    }
    out
}

/// [`record_wire`] without the owner name: TYPE, CLASS, TTL, RDLENGTH,
/// RDATA. What an RRset stores, since its owner comes from the question.
pub fn record_tail(rec: &Record) -> Vec<u8> {
    let mut w = record_wire(rec);
    let n = name_len(&w);
    w.drain(..n);
    w
}

/// Appends [`record_tail`] of `rec` to `out`; `false`, and `out`
/// unchanged, when the record cannot be encoded. Encodes through one
/// buffer per thread (hickory's encoder writes from the start of its
/// buffer and stops at 64 KiB, so it cannot write into a zone's arena).
pub fn append_tail(rec: &Record, out: &mut Vec<u8>) -> bool {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        let mut enc = BinEncoder::new(buf);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        if rec.emit(&mut enc).is_err() {
            return false;
        }
        out.extend_from_slice(&buf[name_len(buf)..]);
        true
    })
}

/// The address an A or AAAA record (TYPE..RDATA) holds.
pub fn address_of(tail: &[u8]) -> Option<std::net::IpAddr> {
    let rdata = tail.get(super::RR_FIXED_LEN..)?;
    match (u16::from_be_bytes([tail[0], tail[1]]), rdata.len()) {
        (super::TYPE_A, 4) => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?)),
        (super::TYPE_AAAA, 16) => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?)),
        _ => None,
    }
}

/// Splits concatenated tails (TYPE CLASS TTL RDLENGTH RDATA, repeated).
pub fn tails(mut wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if wire.len() < super::RR_FIXED_LEN {
            return None;
        }
        let n = (super::RR_FIXED_LEN + u16::from_be_bytes([wire[8], wire[9]]) as usize).min(wire.len());
        let (t, rest) = wire.split_at(n);
        wire = rest;
        Some(t)
    })
}
