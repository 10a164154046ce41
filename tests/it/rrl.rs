//! Response rate limiting (`rate_limit:`), from real sockets: a flood
//! from one network is held back, every `slip`-th response going out
//! empty; another network, TCP and a client with a valid server cookie
//! are not limited; and a spoofer's amplification from a source in no VPC
//! over a 10 s flood for a ~1 KB TXT stays at most 1 in bytes.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::upstream::FakeUpstream;
use crate::support::*;

/// A query for `name` A (or TXT) with EDNS (payload 1232) and, if given, a COOKIE option.
fn raw_query(id: u16, name: &str, qtype: u16, cookie: Option<&[u8]>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0]);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    let opt: Vec<u8> = cookie.map_or_else(Vec::new, |c| [&[0, 10], &(c.len() as u16).to_be_bytes()[..], c].concat());
    m.extend_from_slice(&(opt.len() as u16).to_be_bytes());
    m.extend_from_slice(&opt);
    m
}

/// What came back: a full answer, TC=1 (empty), BADCOOKIE (empty), or nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    answers: usize,
    /// Whole responses with an rcode other than NOERROR.
    errors: usize,
    truncated: usize,
    badcookie: usize,
    dropped: usize,
    /// From the first query sent to the last response received.
    took: Duration,
}

impl Tally {
    /// The most whole answers a bucket of 5 a second can give in that
    /// time: five at once, and one per 200 ms after (a loaded machine
    /// takes longer over a flood, and the bucket earns more meanwhile).
    fn most_answers(&self) -> usize {
        5 + (self.took.as_millis() / 200) as usize + 1
    }
}

/// The 12-bit rcode of a response and the data of its COOKIE option, if any.
fn rcode_and_cookie(r: &[u8]) -> (u16, Option<Vec<u8>>) {
    let u16_at = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
    let skip_name = |mut i: usize| {
        while r[i] != 0 && r[i] & 0xc0 == 0 {
            i += 1 + r[i] as usize;
        }
        if r[i] == 0 { i + 1 } else { i + 2 }
    };
    let mut at = 12;
    for _ in 0..u16_at(4) {
        at = skip_name(at) + 4;
    }
    let (mut rc, mut cookie) = (u16::from(r[3] & 0x0f), None);
    for _ in 0..u16_at(6) as usize + u16_at(8) as usize + u16_at(10) as usize {
        let fixed = skip_name(at);
        let (rtype, rdlen) = (u16_at(fixed), u16_at(fixed + 8) as usize);
        let rdata = &r[fixed + 10..fixed + 10 + rdlen];
        if rtype == 41 {
            rc |= u16::from(r[fixed + 4]) << 4;
            let mut o = rdata;
            while o.len() >= 4 {
                let len = u16::from_be_bytes([o[2], o[3]]) as usize;
                if o[..2] == [0, 10] {
                    cookie = Some(o[4..4 + len].to_vec());
                }
                o = &o[4 + len..];
            }
        }
        at = fixed + 10 + rdlen;
    }
    (rc, cookie)
}

fn find_cookie(r: &[u8]) -> Option<Vec<u8>> {
    rcode_and_cookie(r).1
}

/// Sends `n` queries made by `q(id)` from `from` back to back, then collects what comes back until 500 ms pass with nothing.
fn flood(server: SocketAddr, from: &str, n: usize, q: impl Fn(u16) -> Vec<u8>) -> Tally {
    let sock = UdpSocket::bind((from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let start = Instant::now();
    for id in 0..n {
        sock.send_to(&q(id as u16), server).unwrap();
    }
    let mut t = Tally::default();
    let mut seen = 0;
    let mut buf = [0u8; 4096];
    while let Ok((len, _)) = sock.recv_from(&mut buf) {
        let r = &buf[..len];
        seen += 1;
        t.took = start.elapsed();
        let (rc, _) = rcode_and_cookie(r);
        let ancount = u16::from_be_bytes([r[6], r[7]]);
        if rc == 23 {
            assert_eq!(ancount, 0, "a BADCOOKIE slip is empty");
            t.badcookie += 1;
        } else if r[2] & 0x02 != 0 {
            assert_eq!(ancount, 0, "a TC slip is empty");
            t.truncated += 1;
        } else if rc != 0 {
            t.errors += 1;
        } else {
            assert!(ancount > 0, "a full answer: {ancount} answers");
            t.answers += 1;
        }
    }
    t.dropped = n - seen;
    t
}

const WWW: &str = "www.example.test";

fn limited_server(extra: &str) -> TestServer {
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\nrate_limit:\n  responses_per_second: 5\n  slip: 2\n  window: 15\n{extra}"
    );
    let cfg = if extra.contains("upstreams:") { cfg } else { format!("upstreams: []\n{cfg}") };
    TestServer::start(Path::new(RULES_ZONES), &cfg)
}

#[test]
fn a_flood_from_one_network_is_held_back_and_every_second_slips() {
    let s = limited_server("");
    let at = s.addrs[0];
    let n = 60;
    let t = flood(at, "127.1.0.5", n, |id| raw_query(id, WWW, 1, None));
    eprintln!("flood of {n} from 127.1.0.5: {t:?}");
    // Five at once, and what the bucket earns while the flood is sent.
    assert!((5..=t.most_answers()).contains(&t.answers), "{t:?}");
    let held = n - t.answers;
    assert_eq!((t.truncated, t.dropped, t.badcookie), (held / 2, held - held / 2, 0), "every second one held back slips: {t:?}");
    // Another /24 of the same VPC has buckets of its own.
    let other = flood(at, "127.1.1.5", 5, |id| raw_query(id, WWW, 1, None));
    assert_eq!(other.answers, 5, "{other:?}");
    // Another name from the flooded /24: its own bucket too.
    let alias = flood(at, "127.1.0.9", 3, |id| raw_query(id, "alias.example.test", 1, None));
    assert_eq!(alias.answers, 3, "{alias:?}");
    // TCP is not limited: the same source, the same name.
    let mut conn = tcp_connect(at, "127.1.0.5".parse().unwrap());
    for id in 0..20 {
        tcp_send(&mut conn, &raw_query(id, WWW, 1, None));
        let r = tcp_recv(&mut conn);
        assert!(r[2] & 0x02 == 0 && u16::from_be_bytes([r[6], r[7]]) == 2, "TCP answer {id} is whole");
    }
    let metrics = http(s.admin.unwrap(), "GET", "/metrics").1;
    assert_eq!(metric(&metrics, "pzdns_rrl_total{action=\"dropped\"}"), t.dropped as f64, "{metrics}");
    assert_eq!(metric(&metrics, "pzdns_rrl_total{action=\"slipped\"}"), t.truncated as f64, "{metrics}");
}

#[test]
fn a_valid_server_cookie_exempts_and_cookie_clients_slip_badcookie() {
    let s = limited_server("");
    let at = s.addrs[0];
    let client = [7u8; 8];
    // The server cookie this client gets.
    let first = udp_raw(at, "127.1.0.6".parse().unwrap(), &raw_query(1, WWW, 1, Some(&client))).unwrap();
    let full = find_cookie(&first).expect("a cookie back");
    assert_eq!(&full[..8], &client);
    let with_cookie = flood(at, "127.1.0.6", 40, |id| raw_query(id, WWW, 1, Some(&full)));
    assert_eq!(with_cookie.answers, 40, "a valid server cookie is not limited: {with_cookie:?}");
    // A client cookie alone proves nothing: limited, and its slips are
    // BADCOOKIE with a fresh cookie (it may ask again over UDP with it).
    let only_client = flood(at, "127.1.3.6", 40, |id| raw_query(id, WWW, 1, Some(&client)));
    assert!((5..=only_client.most_answers()).contains(&only_client.answers) && only_client.truncated == 0, "{only_client:?}");
    let held = 40 - only_client.answers;
    assert_eq!((only_client.badcookie, only_client.dropped), (held / 2, held - held / 2), "{only_client:?}");
}

#[test]
fn amplification_from_a_source_in_no_vpc_stays_at_most_one() {
    let up = FakeUpstream::start("127.0.0.1");
    // rate_limit with scope: no_vpc (VPC clients are not limited).
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nunknown_clients: forward\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\nrate_limit:\n  responses_per_second: 5\n  slip: 2\n  window: 15\n  scope: no_vpc\n",
        up.addr
    );
    let s = TestServer::start(Path::new(RULES_ZONES), &cfg);
    let at = s.addrs[0];
    let name = "kilo.public.example";
    // The spoofed source (the victim): in no VPC.
    let sock = Arc::new(UdpSocket::bind("127.99.0.5:0").unwrap());
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let (bytes_out, answers, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let reader = {
        let (sock, bytes_out, answers, stop) = (sock.clone(), bytes_out.clone(), answers.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((len, _)) => {
                        bytes_out.fetch_add(len as u64, Ordering::Relaxed);
                        if buf[2] & 0x02 == 0 && len > 500 {
                            answers.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) if stop.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        })
    };
    // 500 queries a second for 10 s, in bursts of 5 every 10 ms.
    let (start, mut sent, mut bytes_in) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(10) {
        for _ in 0..5 {
            let q = raw_query(sent as u16, name, 16, None);
            bytes_in += q.len() as u64;
            sock.send_to(&q, at).unwrap();
            sent += 1;
        }
        let next = start + Duration::from_millis(10 * sent / 5);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let out = bytes_out.load(Ordering::Relaxed);
    let factor = out as f64 / bytes_in as f64;
    let metrics = http(s.admin.unwrap(), "GET", "/metrics").1;
    let (dropped, slipped) =
        (metric(&metrics, "pzdns_rrl_total{action=\"dropped\"}"), metric(&metrics, "pzdns_rrl_total{action=\"slipped\"}"));
    println!(
        "amplification from a source in no VPC, RRL 5/s slip 2, 10 s: {sent} queries, {bytes_in} bytes in, {out} bytes out \
         ({} whole answers, {slipped} slipped, {dropped} dropped): factor {factor:.3}",
        answers.load(Ordering::Relaxed)
    );
    assert!(answers.load(Ordering::Relaxed) >= 5, "the bucket's first five are answered whole");
    assert!(out <= bytes_in, "amplification {factor:.3} > 1: {out} bytes out for {bytes_in} in");
    // VPC clients are not limited under `scope: no_vpc`.
    let vpc = flood(at, "127.1.0.5", 30, |id| raw_query(id, name, 16, None));
    assert_eq!(vpc.answers, 30, "{vpc:?}");
    // Nor their errors answered before a view is chosen (opcode STATUS: NOTIMP).
    let notimp = flood(at, "127.1.0.5", 30, |id| {
        let mut q = raw_query(id, name, 16, None);
        q[2] |= 0x10;
        q
    });
    assert_eq!(notimp.errors, 30, "{notimp:?}");
    // A source in no VPC: its errors have their bucket.
    let notimp = flood(at, "127.99.0.5", 30, |id| {
        let mut q = raw_query(id, name, 16, None);
        q[2] |= 0x10;
        q
    });
    assert!(notimp.errors <= notimp.most_answers() && notimp.dropped > 0, "{notimp:?}");
    // Answers that waited on an upstream are limited too: new names each
    // time (no cache hit), NXDOMAIN from one zone (the upstream's SOA owner).
    let nx = flood(at, "127.99.1.5", 40, |id| raw_query(id, &format!("r{id}.nx.example"), 1, None));
    assert!(nx.errors <= nx.most_answers() && nx.truncated > 0 && nx.dropped > 0, "{nx:?}");
}
