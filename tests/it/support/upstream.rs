//! A test authority on loopback standing in for the public DNS: answers
//! from a fixed table, counts the queries it gets, and can be switched to
//! misbehave (silent, slow, spoofed replies first, truncated over UDP).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Answer,
    /// Receives and never answers (a dead upstream).
    Silent,
    /// Answers after this many milliseconds.
    DelayMs(u64),
    /// Sends replies with a wrong id, a wrong question, garbage, and the
    /// right id and question from a wrong source (all carrying 6.6.6.6)
    /// before the right one.
    SpoofFirst,
    ServFail,
    /// Answers only garbage bytes.
    Garbage,
    /// Truncates every UDP answer (TC=1), then over TCP sends half a
    /// message and closes the connection.
    TruncateThenCut,
    /// Over UDP, first a reply with the right id whose question has every
    /// letter's case swapped, carrying 6.6.6.6 (a forger who guessed the
    /// id but not the 0x20 case), then the right one.
    CaseSpoofFirst,
    /// Echoes the question lowercased, over UDP and TCP (a server that
    /// does not keep the case of the question).
    LowercaseEcho,
    /// Sends the whole answer over UDP, whatever the payload asked (a
    /// server that overshoots, without TC).
    NoTruncate,
    /// Over UDP, a flood of replies with wrong ids, then one with the right
    /// id, all carrying 6.6.6.6 (a spoofer who got lucky after a flood),
    /// and never the real one; over TCP, the real answer.
    UnwantedFlood(usize),
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    pub behavior: Arc<Mutex<Behavior>>,
    /// The question names received (UDP and TCP), in the case they came.
    pub names: Arc<Mutex<Vec<String>>>,
    /// TTL of the answers it gives (for the serve-stale test).
    pub ttl: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn n(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// The public data: (rcode, answer, authority) for a question.
fn table(q_name: &Name, qtype: RecordType, ttl: u32) -> (ResponseCode, Vec<Record>, Vec<Record>) {
    let name = q_name.to_lowercase().to_string();
    let a = |owner: &Name, ip: [u8; 4]| Record::from_rdata(owner.clone(), ttl, RData::A(A::new(ip[0], ip[1], ip[2], ip[3])));
    let soa = || {
        let z = n("example.");
        Record::from_rdata(z.clone(), 3600, RData::SOA(SOA::new(n("ns.example."), n("hostmaster.example."), 1, 3600, 600, 86400, 30)))
    };
    let owner = q_name.clone();
    match (name.as_str(), qtype) {
        ("popunify-vpc.cn-hangzhou.aliyuncs.com.", RecordType::A) => {
            (ResponseCode::NoError, vec![a(&owner, [100, 100, 2, 148]), a(&owner, [100, 100, 2, 149])], vec![])
        }
        ("www.public.example.", RecordType::A) => {
            let target = n("www2.public.example.");
            (
                ResponseCode::NoError,
                vec![Record::from_rdata(owner, ttl, RData::CNAME(CNAME(target.clone()))), a(&target, [203, 0, 113, 7])],
                vec![],
            )
        }
        ("missing.proxy.test.", RecordType::A) => (ResponseCode::NoError, vec![a(&owner, [198, 51, 100, 1])], vec![]),
        ("ecs.cn-hangzhou.aliyuncs.com.", RecordType::A) => (ResponseCode::NoError, vec![a(&owner, [47, 1, 1, 1])], vec![]),
        ("db.corp.example.", RecordType::A) => (ResponseCode::NoError, vec![a(&owner, [10, 99, 0, 1])], vec![]),
        // ~10 KB per name, a new name each time: a cache flood (over TCP,
        // after a truncated UDP answer).
        (s, RecordType::TXT) if s.starts_with('u') && s.ends_with(".big.example.") => {
            let recs = (0..40)
                .map(|i| Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(vec![format!("{i:03}-{}", "y".repeat(246))]))))
                .collect();
            (ResponseCode::NoError, recs, vec![])
        }
        // ~52 KB: answers a TCP client that never reads piles up.
        ("huge.public.example.", RecordType::TXT) => {
            let recs = (0..200)
                .map(|i| Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(vec![format!("{i:03}-{}", "z".repeat(246))]))))
                .collect();
            (ResponseCode::NoError, recs, vec![])
        }
        // ~1 KB in one record: what a spoofer asks for to amplify (issue #28).
        ("kilo.public.example.", RecordType::TXT) => {
            let txt = TXT::new((0..4).map(|i| format!("{i}-{}", "k".repeat(248))).collect());
            (ResponseCode::NoError, vec![Record::from_rdata(owner.clone(), ttl, RData::TXT(txt))], vec![])
        }
        ("big.public.example.", RecordType::TXT) => {
            let recs = (0..20)
                .map(|i| Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(vec![format!("{i:02}-{}", "x".repeat(60))]))))
                .collect();
            (ResponseCode::NoError, recs, vec![])
        }
        (s, RecordType::A)
            if s.starts_with("stale.")
                || s.contains(".stale.")
                || s.starts_with("slow.")
                || s.starts_with("spoof.")
                || s.starts_with("u") && s.ends_with(".flood.example.") =>
        {
            (ResponseCode::NoError, vec![a(&owner, [192, 0, 2, 53])], vec![])
        }
        ("nodata.public.example.", _) => (ResponseCode::NoError, vec![], vec![soa()]),
        // A broken domain: its authorities fail, the upstream (healthy) says SERVFAIL.
        (s, _) if s.ends_with(".broken.example.") => (ResponseCode::ServFail, vec![], vec![]),
        // A server that does not recurse: a referral (no answer, NS, no SOA, AA=0).
        (s, _) if s.ends_with(".referral.example.") => {
            (ResponseCode::NoError, vec![], vec![Record::from_rdata(n("referral.example."), ttl, RData::NS(NS(n("ns.referral.example."))))])
        }
        // A hostile upstream: its answer leads into a private zone
        // (svc.hz.internal) and carries data for it and for names nobody asked.
        ("cnpriv.up.example.", RecordType::A) => {
            let private = n("www.svc.hz.internal.");
            (
                ResponseCode::NoError,
                vec![
                    Record::from_rdata(owner, ttl, RData::CNAME(CNAME(private.clone()))),
                    a(&private, [6, 6, 6, 6]),
                    a(&n("stray.up.example."), [6, 6, 6, 6]),
                ],
                vec![Record::from_rdata(n("svc.hz.internal."), ttl, RData::NS(NS(n("ns.evil.example."))))],
            )
        }
        ("strayonly.up.example.", RecordType::A) => (ResponseCode::NoError, vec![a(&n("www.svc.hz.internal."), [6, 6, 6, 6])], vec![]),
        _ => (ResponseCode::NXDomain, vec![], vec![soa()]),
    }
}

fn swap_case(c: char) -> char {
    if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
}

fn lowercase_question(r: &mut Message) {
    if let Some(q) = r.queries.first_mut() {
        let lower = q.name().to_lowercase();
        q.set_name(lower);
    }
}

pub fn respond(query: &Message, ttl: u32) -> Message {
    let mut r = Message::new(query.metadata.id, MessageType::Response, query.metadata.op_code);
    r.metadata.recursion_desired = query.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.queries = query.queries.clone();
    if let Some(q) = query.queries.first() {
        let (rcode, ans, auth) = table(q.name(), q.query_type(), ttl);
        r.metadata.response_code = rcode;
        r.answers = ans;
        r.authorities = auth;
        // Glue nobody asked for, for every answer.
        r.additionals = vec![Record::from_rdata(n("ns.evil.example."), ttl, RData::A(A::new(6, 6, 6, 6)))];
    }
    if let Some(e) = &query.edns {
        let mut re = hickory_proto::op::Edns::new();
        re.set_max_payload(e.max_payload().max(512));
        r.set_edns(re);
    }
    r
}

impl FakeUpstream {
    pub fn start(ip: &str) -> FakeUpstream {
        // UDP picks a free port; TCP may find it taken (an outgoing
        // connection's ephemeral port): try again with another.
        let (udp, addr, tcp) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind((ip, 0)).ok()?;
                let addr = udp.local_addr().ok()?;
                let tcp = TcpListener::bind(addr).ok()?;
                Some((udp, addr, tcp))
            })
            .expect("a port free on both UDP and TCP");
        udp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let mut f = FakeUpstream {
            addr,
            udp_queries: Arc::default(),
            tcp_queries: Arc::default(),
            behavior: Arc::new(Mutex::new(Behavior::Answer)),
            names: Arc::default(),
            ttl: Arc::new(AtomicUsize::new(60)),
            stop: Arc::default(),
            threads: Vec::new(),
        };
        let (count, behavior, stop, ttl) = (f.udp_queries.clone(), f.behavior.clone(), f.stop.clone(), f.ttl.clone());
        let names = f.names.clone();
        f.threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let Ok((len, src)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let Ok(q) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                if let Some(qq) = q.queries.first() {
                    names.lock().unwrap().push(qq.name().to_string());
                }
                // A domain that never answers (water torture): names under
                // `torture.example` get nothing back, whatever the behavior.
                if q.queries.first().is_some_and(|q| q.name().to_lowercase().to_string().ends_with(".torture.example.")) {
                    continue;
                }
                let b = *behavior.lock().unwrap();
                let ttl = ttl.load(Ordering::Relaxed) as u32;
                let mut r = respond(&q, ttl);
                match b {
                    Behavior::Silent => continue,
                    Behavior::DelayMs(ms) => {
                        // Answer from another thread so that queries keep being counted.
                        let sock = udp.try_clone().unwrap();
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(ms));
                            let _ = sock.send_to(&r.to_vec().unwrap(), src);
                        });
                        continue;
                    }
                    Behavior::SpoofFirst => {
                        let mut bad = r.clone();
                        bad.metadata.id = r.metadata.id.wrapping_add(1);
                        bad.answers = table(&n("spoof.x."), RecordType::A, ttl)
                            .1
                            .into_iter()
                            .map(|mut a| {
                                a.name = q.queries[0].name().clone();
                                a.data = RData::A(A::new(6, 6, 6, 6));
                                a
                            })
                            .collect();
                        let _ = udp.send_to(&bad.to_vec().unwrap(), src);
                        let mut bad2 = bad.clone();
                        bad2.metadata.id = r.metadata.id;
                        bad2.queries[0].set_name(n("other.example."));
                        let _ = udp.send_to(&bad2.to_vec().unwrap(), src);
                        let _ = udp.send_to(&[0xde, 0xad], src);
                        // The right id and question, from another source address.
                        let mut bad3 = bad.clone();
                        bad3.metadata.id = r.metadata.id;
                        if let Ok(other) = UdpSocket::bind((addr.ip(), 0)) {
                            let _ = other.send_to(&bad3.to_vec().unwrap(), src);
                        }
                    }
                    Behavior::Garbage => {
                        let _ = udp.send_to(&[0x13, 0x37, 0xff, 0xff, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3], src);
                        continue;
                    }
                    Behavior::TruncateThenCut => {
                        r.answers.clear();
                        r.metadata.truncation = true;
                    }
                    Behavior::ServFail => {
                        r.metadata.response_code = ResponseCode::ServFail;
                        r.answers.clear();
                        r.authorities.clear();
                    }
                    Behavior::CaseSpoofFirst => {
                        let mut bad = r.clone();
                        let swapped: String = q.queries[0].name().to_string().chars().map(swap_case).collect();
                        bad.queries[0].set_name(Name::from_ascii(&swapped).unwrap());
                        bad.answers.iter_mut().for_each(|a| a.data = RData::A(A::new(6, 6, 6, 6)));
                        let _ = udp.send_to(&bad.to_vec().unwrap(), src);
                    }
                    Behavior::LowercaseEcho => lowercase_question(&mut r),
                    Behavior::NoTruncate => {
                        let _ = udp.send_to(&r.to_vec().unwrap(), src);
                        continue;
                    }
                    Behavior::UnwantedFlood(n) => {
                        let mut bad = r.clone();
                        bad.answers.iter_mut().for_each(|a| a.data = RData::A(A::new(6, 6, 6, 6)));
                        for i in 0..n {
                            bad.metadata.id = r.metadata.id.wrapping_add(1 + i as u16);
                            let _ = udp.send_to(&bad.to_vec().unwrap(), src);
                            if i % 16 == 15 {
                                // Paced, so that the receiver's socket buffer does not drop them.
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                        bad.metadata.id = r.metadata.id;
                        let _ = udp.send_to(&bad.to_vec().unwrap(), src);
                        continue;
                    }
                    Behavior::Answer => {}
                }
                let mut bytes = r.to_vec().unwrap();
                let limit = q.edns.as_ref().map_or(512, |e| e.max_payload() as usize);
                if bytes.len() > limit {
                    // Too big for UDP: header and question only, TC set.
                    r.answers.clear();
                    r.metadata.truncation = true;
                    bytes = r.to_vec().unwrap();
                }
                let _ = udp.send_to(&bytes, src);
            }
        }));
        let (count, behavior, stop, ttl) = (f.tcp_queries.clone(), f.behavior.clone(), f.stop.clone(), f.ttl.clone());
        let names = f.names.clone();
        f.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((s, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                // One thread per connection (each ends within its read
                // timeout), so that a flood of fallbacks is not served one
                // at a time.
                let (count, behavior, ttl, names) = (count.clone(), behavior.clone(), ttl.clone(), names.clone());
                std::thread::spawn(move || serve_tcp(s, &count, &behavior, &ttl, &names));
            }
        }));
        f
    }

    pub fn set(&self, b: Behavior) {
        *self.behavior.lock().unwrap() = b;
    }

    pub fn queries(&self) -> usize {
        self.udp_queries.load(Ordering::Relaxed) + self.tcp_queries.load(Ordering::Relaxed)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One TCP connection of the fake upstream: one question, one answer.
fn serve_tcp(mut s: std::net::TcpStream, count: &AtomicUsize, behavior: &Mutex<Behavior>, ttl: &AtomicUsize, names: &Mutex<Vec<String>>) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut len = [0u8; 2];
    if s.read_exact(&mut len).is_err() {
        return;
    }
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    if s.read_exact(&mut buf).is_err() {
        return;
    }
    count.fetch_add(1, Ordering::Relaxed);
    let b = *behavior.lock().unwrap();
    if b == Behavior::Silent {
        return;
    }
    let Ok(q) = Message::from_vec(&buf) else {
        return;
    };
    if let Some(qq) = q.queries.first() {
        names.lock().unwrap().push(qq.name().to_string());
    }
    let mut r = respond(&q, ttl.load(Ordering::Relaxed) as u32);
    if b == Behavior::LowercaseEcho {
        lowercase_question(&mut r);
    }
    let bytes = r.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    if b == Behavior::TruncateThenCut {
        // Half a message, then the connection closes.
        let _ = s.write_all(&framed[..framed.len() / 2]);
        return;
    }
    let _ = s.write_all(&framed);
}
