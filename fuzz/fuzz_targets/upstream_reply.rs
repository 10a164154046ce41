//! Upstream replies: the first two bytes are the id we "sent"; the rest is
//! what came back. Anything is rejected or accepted and cached without a
//! panic, an accepted reply answers exactly our question, and what is
//! kept of it (`upstream::contain`) holds records of the asked chain only.
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
        let dnssec_ok = data[0] & 1 == 1;
        let e = Entry::from_reply(&name, RecordType::A, m.metadata.response_code, m.answers, m.authorities, dnssec_ok, Duration::from_secs(60));
        assert!(e.additionals().is_empty(), "no additional section is kept");
        if let Some(first) = e.answers().first() {
            assert_eq!(first.name, name, "the chain starts at the name asked");
        }
        let later = Instant::now() + Duration::from_secs(u64::from(e.ttl) + 1);
        let _ = (e.aged(Instant::now(), &e.answers()), e.aged(later, &e.authorities()), e.is_fresh(later));
    }
});
