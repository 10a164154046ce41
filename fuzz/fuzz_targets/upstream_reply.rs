//! Upstream replies: two bytes of the id we "sent", a byte of flags, then
//! what came back. Flags: bit 0 the question went out in random case
//! (0x20), bit 1 DO, bit 2 the reply is made to echo our header and
//! question (so that the decoding and classifying past the match is
//! reached), bit 3 its question's case is then swapped, bit 4 it is padded
//! past the UDP buffer. Anything is rejected, sent to TCP, or accepted and
//! cached without a panic; an accepted reply answers exactly our question,
//! in the case of the name asked; what is kept of it (`upstream::contain`)
//! holds records of the asked chain only, whose owners never carry a case
//! the name asked does not have.
#![no_main]

use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;
use pzdns::upstream::{Entry, Matched, UDP_REPLY_BUFFER, Verdict, accept_reply, classify, match_reply, query_bytes};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (id, flags) = (u16::from_be_bytes([data[0], data[1]]), data[2]);
    let (caps, dnssec_ok, echo, swap, pad) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0, flags & 8 != 0, flags & 16 != 0);
    const ASKED: &str = "www.Example.com.";
    let name = Name::from_ascii(ASKED).unwrap();
    let query = query_bytes(id, &name, RecordType::A, dnssec_ok, caps).unwrap();
    // Header, the name in wire form (a length byte more than its text), type and class.
    let qend = 12 + ASKED.len() + 1 + 4;
    let mut reply = data[3..].to_vec();
    if echo && reply.len() >= qend {
        reply[..2].copy_from_slice(&query[..2]);
        reply[2] |= 0x80;
        reply[4..6].copy_from_slice(&[0, 1]);
        reply[12..qend].copy_from_slice(&query[12..qend]);
        if swap {
            reply[12..qend - 4].iter_mut().filter(|b| b.is_ascii_alphabetic()).for_each(|b| *b ^= 0x20);
        }
    }
    if pad && reply.len() <= UDP_REPLY_BUFFER {
        reply.resize(UDP_REPLY_BUFFER + 1, 0);
    }
    let matched = match_reply(&reply, &query);
    match accept_reply(&mut reply, &query, &name, true, UDP_REPLY_BUFFER) {
        Verdict::Accept(m) => {
            assert_eq!(matched, Matched::Exactly);
            assert!(reply.len() <= UDP_REPLY_BUFFER);
            assert_eq!(m.metadata.id, id);
            assert_eq!(m.queries.len(), 1);
            assert!(m.queries[0].name().eq_case(&name), "the question in the case asked: {}", m.queries[0].name());
            let _ = classify(&m);
            let e = Entry::from_reply(&name, RecordType::A, m.metadata.response_code, m.answers, m.authorities, dnssec_ok, Duration::from_secs(60));
            assert!(e.additionals().is_empty(), "no additional section is kept");
            if let Some(first) = e.answers().first() {
                assert!(first.name.eq_case(&name), "the chain starts at the name asked, in its case: {}", first.name);
            }
            let later = Instant::now() + Duration::from_secs(u64::from(e.ttl) + 1);
            let _ = (e.aged(Instant::now(), &e.answers()), e.aged(later, &e.authorities()), e.is_fresh(later));
        }
        Verdict::CaseDiffers => assert_eq!(matched, Matched::CaseOnly),
        Verdict::Oversized => assert!(matched != Matched::No && reply.len() > UDP_REPLY_BUFFER),
        Verdict::Unwanted => {}
    }
});
