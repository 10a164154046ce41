//! Upstream replies: the first two bytes are the id we "sent"; the rest is
//! what came back. Anything is rejected or accepted and cached without a
//! panic, and an accepted reply answers exactly our question.
#![no_main]

use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;
use pzdns::upstream::{Entry, accept_reply};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let id = u16::from_be_bytes([data[0], data[1]]);
    let name = Name::from_str("www.example.com.").unwrap();
    if let Some(m) = accept_reply(&data[2..], id, &name, RecordType::A) {
        assert_eq!(m.metadata.id, id);
        assert_eq!(m.queries.len(), 1);
        let e = Entry::new(m.metadata.response_code, m.answers, m.authorities, m.additionals, data[0] & 1 == 1, Duration::from_secs(60));
        let later = Instant::now() + Duration::from_secs(u64::from(e.ttl) + 1);
        let _ = (e.aged(Instant::now(), &e.answers), e.aged(later, &e.authorities), e.is_fresh(later));
    }
});
