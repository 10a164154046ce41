//! EDNS Client Subnet through the whole answer path: one byte picks the
//! name, the rest is an ECS option's data exactly as sent, from the
//! fixture's trusted forwarder with `client_subnet: trusted`. Checked
//! against RFC 7871 as written here, independently of the server's reader:
//! a malformed option is FORMERR and nothing else is; a well-formed one is
//! echoed with the query's family, source prefix and address, a scope no
//! wider than the family; a prefix of 0 gets scope 0; an IPv4-mapped IPv6
//! claim is answered exactly as its IPv4 claim, with 96 + its scope.
#![no_main]

#[path = "fixture.rs"]
mod fixture;

use fixture::state;
use libfuzzer_sys::fuzz_target;
use pzdns::answer::{Client, Transport};
use pzdns::state::Shared;

/// Names of vpc-a, vpc-b and vpc-c's zones, one in none.
const NAMES: [&str; 4] = ["www.example.test.", "ecs.cn-hangzhou.aliyuncs.com.", "ecs.cn-shanghai.aliyuncs.com.", "nowhere.invalid."];

fn query(name: &str, ecs: &[u8]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for l in name.trim_end_matches('.').split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
    m.extend_from_slice(&((ecs.len() + 4) as u16).to_be_bytes());
    m.extend_from_slice(&[0, 8]);
    m.extend_from_slice(&(ecs.len() as u16).to_be_bytes());
    m.extend_from_slice(ecs);
    m
}

/// RFC 7871 §6, BIND's reading: whether the option is well formed.
fn well_formed(ecs: &[u8]) -> bool {
    let [f0, f1, source, scope, addr @ ..] = ecs else { return false };
    let width = match u16::from_be_bytes([*f0, *f1]) {
        0 => 0,
        1 => 32,
        2 => 128,
        _ => return false,
    };
    let n = (*source as usize).div_ceil(8);
    let tail_clear = source % 8 == 0 || addr.last().is_none_or(|b| b & (0xff >> (source % 8)) == 0);
    *source <= width && addr.len() == n && *scope == 0 && tail_clear
}

struct Reply {
    rcode: u8,
    /// Everything but the header's id and the OPT record.
    body: Vec<u8>,
    /// The echoed option's data.
    echo: Option<Vec<u8>>,
}

fn ask(shared: &Shared, rt: &tokio::runtime::Runtime, name: &str, ecs: &[u8]) -> Reply {
    let src: std::net::SocketAddr = "127.0.0.53:53000".parse().unwrap();
    let client = Client { listener: 0, src, proxy: None, transport: Transport::Udp };
    let r = rt.block_on(shared.answer_bytes(client, &query(name, ecs))).expect("a query is answered");
    let opt = opt_record(&r);
    assert_eq!(&r[opt..opt + 3], [0, 0, 41], "the OPT record comes last");
    let mut echo = None;
    let mut o = &r[opt + 11..];
    while o.len() >= 4 {
        let (code, len) = (u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]) as usize);
        assert!(o.len() >= 4 + len, "options fill the OPT");
        if code == 8 {
            assert!(echo.is_none(), "one ECS option echoed");
            echo = Some(o[4..4 + len].to_vec());
        }
        o = &o[4 + len..];
    }
    Reply { rcode: r[3] & 0xf, body: r[2..opt].to_vec(), echo }
}

/// Where the OPT record starts: after the question and every answer and
/// authority record (names skipped, compressed or not).
fn opt_record(r: &[u8]) -> usize {
    let skip_name = |mut i: usize| loop {
        match r[i] {
            0 => return i + 1,
            l if l & 0xc0 == 0xc0 => return i + 2,
            l => i += 1 + l as usize,
        }
    };
    let count = |at: usize| u16::from_be_bytes([r[at], r[at + 1]]) as usize;
    let mut i = skip_name(12) + 4;
    for _ in 0..count(6) + count(8) {
        i = skip_name(i) + 8;
        i += 2 + count(i);
    }
    i
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, ecs)) = data.split_first() else { return };
    if ecs.len() > 64 {
        return;
    }
    let (rt, shared) = state();
    let name = NAMES[pick as usize % NAMES.len()];
    let r = ask(shared, rt, name, ecs);
    if !well_formed(ecs) {
        assert_eq!((r.rcode, &r.echo), (1, &None), "malformed: FORMERR, nothing echoed");
        return;
    }
    assert_ne!(r.rcode, 1, "well formed: not FORMERR");
    let echo = r.echo.expect("a believed option is echoed");
    assert_eq!((&echo[..3], &echo[4..]), (&ecs[..3], &ecs[4..]), "family, source prefix and address echoed as sent");
    let (family, source, scope) = (u16::from_be_bytes([ecs[0], ecs[1]]), ecs[2], echo[3]);
    let width = [0, 32, 128][family as usize];
    assert!(scope <= width, "scope {scope} within the family");
    let mapped = family == 2 && source >= 96 && ecs[4..14].iter().all(|b| *b == 0) && ecs[14..16] == [0xff, 0xff];
    if source == 0 || (mapped && source == 96) {
        assert_eq!(scope, 0, "no claim: valid for any client");
    }
    // An IPv4-mapped claim: as its IPv4 claim, in IPv6 bits.
    if mapped && source > 96 {
        let v4 = [&[0, 1, source - 96, 0][..], &ecs[16..]].concat();
        let r4 = ask(shared, rt, name, &v4);
        assert_eq!((r.rcode, &r.body), (r4.rcode, &r4.body), "answered as the IPv4 claim");
        assert_eq!(scope, 96 + r4.echo.expect("echoed")[3], "scope 96 + the IPv4 scope");
    }
});
