//! The validator on a hierarchy signed here with ring (ECDSAP256SHA256):
//! a root, `example.` (NSEC) and `n3.` (NSEC3). Every answer validates
//! secure as built; with a bit flipped or bytes cut in any RRSIG, DNSKEY,
//! DS, NSEC or NSEC3 RDATA it depends on, never secure, never a panic.

use std::collections::HashMap;
use std::sync::Mutex;

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use super::wire::{self, Rr};
use super::*;

const NOW: u32 = 1_800_000_000;

use super::wire::tests::name;

fn record(owner: &[u8], t: u16, rdata: &[u8]) -> Vec<u8> {
    let mut v = owner.to_vec();
    v.extend_from_slice(&t.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&300u32.to_be_bytes());
    v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    v.extend_from_slice(rdata);
    v
}

struct Zone {
    apex: Vec<u8>,
    key: EcdsaKeyPair,
    dnskey: Vec<u8>,
}

impl Zone {
    fn new(apex: &str, rng: &SystemRandom) -> Zone {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), rng).unwrap();
        let mut dnskey = vec![1, 1, 3, 13];
        dnskey.extend_from_slice(&key.public_key().as_ref()[1..]);
        Zone { apex: name(apex), key, dnskey }
    }

    /// The RRSIG over `rrset` (wire records of one owner and type).
    fn sign(&self, rrset: &[Vec<u8>], rng: &SystemRandom) -> Vec<u8> {
        let rrs: Vec<Rr<'_>> = rrset.iter().map(|r| Rr::parse(r).unwrap()).collect();
        let mut head = Vec::new();
        head.extend_from_slice(&rrs[0].rtype.to_be_bytes());
        head.push(13);
        head.push(wire::label_count(rrs[0].owner) as u8);
        head.extend_from_slice(&300u32.to_be_bytes());
        head.extend_from_slice(&(NOW + 86400).to_be_bytes());
        head.extend_from_slice(&(NOW - 86400).to_be_bytes());
        head.extend_from_slice(&wire::key_tag(&self.dnskey).to_be_bytes());
        head.extend_from_slice(&self.apex);
        let sig = wire::Rrsig::parse(&head).unwrap();
        let data = wire::signed_data(&sig, &rrs).unwrap();
        let mut rdata = head.clone();
        rdata.extend_from_slice(self.key.sign(rng, &data).unwrap().as_ref());
        record(rrs[0].owner, wire::TYPE_RRSIG, &rdata)
    }

    fn ds(&self) -> Vec<u8> {
        let mut rd = wire::key_tag(&self.dnskey).to_be_bytes().to_vec();
        rd.extend_from_slice(&[13, 2]);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.apex);
        ctx.update(&self.dnskey);
        rd.extend_from_slice(ctx.finish().as_ref());
        rd
    }
}

/// A type bitmap of window 0 with `types` (all under 256).
fn bitmap(types: &[u16]) -> Vec<u8> {
    let max = types.iter().max().copied().unwrap_or(0) as usize;
    let mut bits = vec![0u8; max / 8 + 1];
    for t in types {
        bits[*t as usize / 8] |= 0x80 >> (t % 8);
    }
    let mut v = vec![0, bits.len() as u8];
    v.extend(bits);
    v
}

/// An answer by record indices: rcode, answer section, authority section.
type Sections = (u16, Vec<usize>, Vec<usize>);
/// A question and its answer: name, type, then [`Sections`] laid flat.
type Question = (Vec<u8>, u16, u16, Vec<usize>, Vec<usize>);

/// Every record, by index, and the answers built from them.
struct World {
    records: Vec<Vec<u8>>,
    /// (name, type) → (rcode, answer indices, authority indices).
    served: HashMap<(Vec<u8>, u16), Sections>,
    /// The answers validated: question, rcode, sections.
    answers: Vec<Question>,
    anchor: Vec<u8>,
}

impl World {
    fn add(&mut self, r: Vec<u8>) -> usize {
        self.records.push(r);
        self.records.len() - 1
    }

    /// An RRset and its RRSIG, as indices.
    fn signed(&mut self, z: &Zone, rrset: Vec<Vec<u8>>, rng: &SystemRandom) -> Vec<usize> {
        let sig = z.sign(&rrset, rng);
        let mut v: Vec<usize> = rrset.into_iter().map(|r| self.add(r)).collect();
        v.push(self.add(sig));
        v
    }

    fn build() -> World {
        let rng = SystemRandom::new();
        let (root, ex, n3) = (Zone::new(".", &rng), Zone::new("example.", &rng), Zone::new("n3.", &rng));
        let mut w = World { records: Vec::new(), served: HashMap::new(), answers: Vec::new(), anchor: root.ds() };
        for z in [&root, &ex, &n3] {
            let keys = w.signed(z, vec![record(&z.apex, wire::TYPE_DNSKEY, &z.dnskey)], &rng);
            w.served.insert((z.apex.clone(), wire::TYPE_DNSKEY), (0, keys, Vec::new()));
        }
        for z in [&ex, &n3] {
            let ds = w.signed(&root, vec![record(&z.apex, wire::TYPE_DS, &z.ds())], &rng);
            w.served.insert((z.apex.clone(), wire::TYPE_DS), (0, ds, Vec::new()));
        }
        let soa = |z: &Zone| {
            let mut rd = z.apex.clone();
            rd.extend_from_slice(&z.apex);
            rd.extend_from_slice(&[0, 0, 0, 1, 0, 0, 14, 16, 0, 0, 2, 88, 0, 1, 81, 128, 0, 0, 1, 44]);
            record(&z.apex, wire::TYPE_SOA, &rd)
        };
        // example.: www A, an NSEC chain example. → www.example. → example.
        let www = name("www.example.");
        let a = w.signed(&ex, vec![record(&www, 1, &[192, 0, 2, 1])], &rng);
        w.answers.push((www.clone(), 1, 0, a, Vec::new()));
        let mut proof = w.signed(&ex, vec![soa(&ex)], &rng);
        let mut rd = www.clone();
        rd.extend(bitmap(&[2, 6, 46, 47, 48]));
        proof.extend(w.signed(&ex, vec![record(&ex.apex, wire::TYPE_NSEC, &rd)], &rng));
        let mut rd = ex.apex.clone();
        rd.extend(bitmap(&[1, 46, 47]));
        let nsec_www = w.signed(&ex, vec![record(&www, wire::TYPE_NSEC, &rd)], &rng);
        proof.extend(nsec_www.iter().copied());
        w.answers.push((name("nx.example."), 1, 3, Vec::new(), proof));
        // NODATA: www has no AAAA.
        let mut nodata = w.signed(&ex, vec![soa(&ex)], &rng);
        nodata.extend(nsec_www);
        w.answers.push((www, 28, 0, Vec::new(), nodata));
        // n3.: NSEC3 (salt AB, 2 iterations) over n3. and www.n3.
        let (salt, iterations) = (vec![0xab], 2u16);
        let mut hashes: Vec<[u8; 20]> = ["n3.", "www.n3."].iter().map(|n| wire::nsec3_hash(&name(n), &salt, iterations)).collect();
        hashes.sort();
        let mut proof = w.signed(&n3, vec![soa(&n3)], &rng);
        for i in 0..2 {
            let (h, next) = (hashes[i], hashes[(i + 1) % 2]);
            let label = base32hex(&h);
            let mut owner = vec![label.len() as u8];
            owner.extend_from_slice(label.as_bytes());
            owner.extend_from_slice(&n3.apex);
            let mut rd = vec![1, 0];
            rd.extend_from_slice(&iterations.to_be_bytes());
            rd.push(salt.len() as u8);
            rd.extend_from_slice(&salt);
            rd.push(20);
            rd.extend_from_slice(&next);
            rd.extend(bitmap(&[1, 2, 6, 46]));
            proof.extend(w.signed(&n3, vec![record(&owner, wire::TYPE_NSEC3, &rd)], &rng));
        }
        w.answers.push((name("nx.n3."), 1, 3, Vec::new(), proof));
        w
    }

    fn trust(&self) -> Trust {
        Trust { anchors: vec![Anchor { owner: vec![0], ds: vec![self.anchor.clone()], dnskeys: Vec::new() }], negative: Vec::new() }
    }
}

fn base32hex(b: &[u8]) -> String {
    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let (mut out, mut acc, mut bits) = (String::new(), 0u64, 0);
    for &x in b {
        acc = (acc << 8) | x as u64;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(A[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// Serves the world's DS and DNSKEY answers, noting which records it gave.
struct Served<'w> {
    world: &'w World,
    records: &'w [Vec<u8>],
    used: Mutex<Vec<usize>>,
}

struct Given {
    rcode: u16,
    answers: Vec<Vec<u8>>,
    authorities: Vec<Vec<u8>>,
}

impl Reply for Given {
    fn rcode(&self) -> u16 {
        self.rcode
    }
    fn sections(&self) -> (Vec<Rr<'_>>, Vec<Rr<'_>>) {
        (wire::parse_all(self.answers.iter().map(Vec::as_slice)), wire::parse_all(self.authorities.iter().map(Vec::as_slice)))
    }
    fn status(&self) -> Status {
        Status::Unchecked
    }
    fn ttl(&self) -> u32 {
        300
    }
}

impl Fetch for Served<'_> {
    type Reply = Given;
    async fn fetch(&self, name: &[u8], rtype: u16) -> Option<Given> {
        let (rcode, an, au) = self.world.served.get(&(name.to_vec(), rtype))?;
        self.used.lock().unwrap().extend(an.iter().chain(au));
        let get = |ix: &[usize]| ix.iter().map(|i| self.records[*i].clone()).collect();
        Some(Given { rcode: *rcode, answers: get(an), authorities: get(au) })
    }
    fn checked(&self, _: &Given, _: Status) {}
}

/// Validates answer `i` of the world with `records` (perhaps mutated): the
/// status, and every record it depended on.
fn validate(w: &World, records: &[Vec<u8>], i: usize) -> (Status, Vec<usize>) {
    let (qname, qtype, rcode, an, au) = &w.answers[i];
    let served = Served { world: w, records, used: Mutex::new(an.iter().chain(au).copied().collect()) };
    let an_rr = wire::parse_all(an.iter().map(|i| records[*i].as_slice()));
    let au_rr = wire::parse_all(au.iter().map(|i| records[*i].as_slice()));
    let answer = Answer { qname, qtype: *qtype, rcode: *rcode, answers: &an_rr, authorities: &au_rr };
    let v = Validator::new(w.trust());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let status = rt.block_on(v.validate(&served, &answer, NOW, &mut Budget::default()));
    let used = served.used.into_inner().unwrap();
    (status, used)
}

#[test]
fn the_signed_world_validates_secure() {
    let w = World::build();
    for i in 0..w.answers.len() {
        assert_eq!(validate(&w, &w.records, i).0, Status::Secure, "answer {i}");
    }
    // Out of its window: expired, then not yet valid.
    let (qname, qtype, rcode, an, au) = &w.answers[0];
    let an_rr = wire::parse_all(an.iter().map(|i| w.records[*i].as_slice()));
    let au_rr = wire::parse_all(au.iter().map(|i| w.records[*i].as_slice()));
    let answer = Answer { qname, qtype: *qtype, rcode: *rcode, answers: &an_rr, authorities: &au_rr };
    let served = Served { world: &w, records: &w.records, used: Mutex::new(Vec::new()) };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let v = Validator::new(w.trust());
    assert_eq!(rt.block_on(v.validate(&served, &answer, NOW + 2 * 86400, &mut Budget::default())), Status::Bogus(Bogus::Expired));
    assert_eq!(rt.block_on(v.validate(&served, &answer, NOW - 2 * 86400, &mut Budget::default())), Status::Bogus(Bogus::NotYetValid));
    // Under a negative trust anchor: insecure, whatever the data.
    let v = Validator::new(Trust { negative: vec![name("example.")], ..w.trust() });
    assert_eq!(rt.block_on(v.validate(&served, &answer, NOW + 2 * 86400, &mut Budget::default())), Status::Insecure);
}

#[test]
fn tampered_dnssec_records_are_never_secure() {
    use proptest::test_runner::{Config, TestRunner};
    let w = World::build();
    let deps: Vec<Vec<usize>> = (0..w.answers.len()).map(|i| validate(&w, &w.records, i).1).collect();
    let dnssec = [wire::TYPE_RRSIG, wire::TYPE_DNSKEY, wire::TYPE_DS, wire::TYPE_NSEC, wire::TYPE_NSEC3];
    let targets: Vec<usize> =
        (0..w.records.len()).filter(|i| Rr::parse(&w.records[*i]).is_some_and(|r| dnssec.contains(&r.rtype))).collect();
    let mut runner = TestRunner::new(Config { cases: 1500, failure_persistence: None, ..Config::default() });
    let strategy = (0..targets.len(), 0usize..4096, proptest::bool::ANY);
    runner
        .run(&strategy, |(t, at, cut)| {
            let i = targets[t];
            let mut records = w.records.clone();
            let r = Rr::parse(&records[i]).unwrap();
            let start = records[i].len() - r.rdata.len();
            let original = r.rdata.to_vec();
            let rtype = r.rtype;
            if cut {
                // RDATA cut short, RDLENGTH kept true.
                let keep = at % original.len();
                records[i].truncate(start + keep);
                let len = (keep as u16).to_be_bytes();
                records[i][start - 2..start].copy_from_slice(&len);
            } else {
                let bit = at % (original.len() * 8);
                records[i][start + bit / 8] ^= 0x80 >> (bit % 8);
                // A signer name in another case is the same signer.
                if rtype == wire::TYPE_RRSIG && records[i][start..].eq_ignore_ascii_case(&original) {
                    return Ok(());
                }
            }
            for (a, d) in deps.iter().enumerate() {
                let (status, _) = validate(&w, &records, a);
                if d.contains(&i) {
                    proptest::prop_assert!(status != Status::Secure, "answer {a} secure with record {i} (type {rtype}) changed");
                }
            }
            Ok(())
        })
        .unwrap();
}

/// KeyTrap (CVE-2023-50387): signatures that all name the zone's key but
/// do not verify cost one check each, up to the budget; past it the
/// answer is bogus without another check. Below it, the good signature
/// after them still validates.
#[test]
fn signature_checks_are_bounded_per_response() {
    let w = World::build();
    let (qname, qtype, rcode, an, au) = &w.answers[0];
    let good = an.iter().copied().find(|i| Rr::parse(&w.records[*i]).unwrap().rtype == wire::TYPE_RRSIG).unwrap();
    let mut forged = w.records[good].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let v = Validator::new(w.trust());
    let run = |bad: usize| {
        let mut records: Vec<Vec<u8>> = vec![forged.clone(); bad];
        records.extend(an.iter().map(|i| w.records[*i].clone()));
        let an_rr = wire::parse_all(records.iter().map(Vec::as_slice));
        let au_rr = wire::parse_all(au.iter().map(|i| w.records[*i].as_slice()));
        let answer = Answer { qname, qtype: *qtype, rcode: *rcode, answers: &an_rr, authorities: &au_rr };
        let served = Served { world: &w, records: &w.records, used: Mutex::new(Vec::new()) };
        let mut budget = Budget::default();
        let status = rt.block_on(v.validate(&served, &answer, NOW, &mut budget));
        (status, MAX_SIGNATURE_CHECKS - budget.checks)
    };
    assert_eq!(run(0), (Status::Secure, 4), "the chain (root DNSKEY, DS, DNSKEY) and the answer: one check each");
    assert_eq!(run(20).0, Status::Secure, "a few bad signatures before the good one");
    let (status, used) = run(1000);
    assert_eq!(status, Status::Bogus(Bogus::TooMuchWork));
    assert_eq!(used, MAX_SIGNATURE_CHECKS, "no check past the budget");
}

/// [`Served`] under a memo scope, counting the sets it is asked for.
struct Remembering<'w> {
    served: Served<'w>,
    scope: (u64, u64),
    fetches: std::sync::atomic::AtomicUsize,
}

impl Fetch for Remembering<'_> {
    type Reply = Given;
    async fn fetch(&self, name: &[u8], rtype: u16) -> Option<Given> {
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.served.fetch(name, rtype).await
    }
    fn checked(&self, r: &Given, s: Status) {
        self.served.checked(r, s)
    }
    fn memo_scope(&self) -> Option<(u64, u64)> {
        Some(self.scope)
    }
}

/// A zone's chain of trust, once found, serves the next answers under it
/// without reading DS and DNSKEY sets again: for its sets' TTL, under the
/// same scope (route and cache generation) only.
#[test]
fn chains_of_trust_are_remembered_for_their_ttl_and_scope() {
    let w = World::build();
    let v = Validator::new(w.trust());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // Answer 0 (www.example. A) at `now` under `scope`: its status and the sets read.
    let run_on = |records: &[Vec<u8>], scope: (u64, u64), now: u32| {
        let (qname, qtype, rcode, an, au) = &w.answers[0];
        let an_rr = wire::parse_all(an.iter().map(|i| records[*i].as_slice()));
        let au_rr = wire::parse_all(au.iter().map(|i| records[*i].as_slice()));
        let answer = Answer { qname, qtype: *qtype, rcode: *rcode, answers: &an_rr, authorities: &au_rr };
        let f = Remembering {
            served: Served { world: &w, records: &w.records, used: Mutex::new(Vec::new()) },
            scope,
            fetches: Default::default(),
        };
        let status = rt.block_on(v.validate(&f, &answer, now, &mut Budget::default()));
        (status, f.fetches.into_inner())
    };
    let run = |scope: (u64, u64), now: u32| run_on(&w.records, scope, now);
    // DNSKEY ., DS example., DNSKEY example.; then nothing.
    assert_eq!(run((1, 0), NOW), (Status::Secure, 3));
    assert_eq!(run((1, 0), NOW + 299), (Status::Secure, 0));
    // Past the sets' TTL, after a flush (generation), on another route: read again.
    assert_eq!(run((1, 0), NOW + 300), (Status::Secure, 3));
    assert_eq!(run((1, 1), NOW + 300), (Status::Secure, 3));
    assert_eq!(run((2, 1), NOW + 300), (Status::Secure, 3));
    // The answer's own signature is still checked, with the remembered keys.
    let mut tampered = w.records.clone();
    let a = w.answers[0].3[0];
    *tampered[a].last_mut().unwrap() ^= 1;
    assert_eq!(run_on(&tampered, (2, 1), NOW + 301), (Status::Bogus(Bogus::Signature), 0));
}

/// A zone whose DNSKEY set does not check out is remembered bogus (as
/// Unbound keeps a bad key) for at most BOGUS_TTL: the names under it are
/// not each worth another DNSKEY question meanwhile.
#[test]
fn a_bogus_chain_is_remembered_for_the_bogus_ttl() {
    let w = World::build();
    let v = Validator::new(w.trust());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut records = w.records.clone();
    let (_, keys, _) = &w.served[&(name("example."), wire::TYPE_DNSKEY)];
    // The RRSIG over example.'s DNSKEY set, one bit flipped.
    *records[keys[1]].last_mut().unwrap() ^= 1;
    let run = |now: u32| {
        let (qname, qtype, rcode, an, au) = &w.answers[0];
        let an_rr = wire::parse_all(an.iter().map(|i| records[*i].as_slice()));
        let au_rr = wire::parse_all(au.iter().map(|i| records[*i].as_slice()));
        let answer = Answer { qname, qtype: *qtype, rcode: *rcode, answers: &an_rr, authorities: &au_rr };
        let f = Remembering {
            served: Served { world: &w, records: &records, used: Mutex::new(Vec::new()) },
            scope: (1, 0),
            fetches: Default::default(),
        };
        let mut budget = Budget::default();
        let status = rt.block_on(v.validate(&f, &answer, now, &mut budget));
        (status, f.fetches.into_inner(), budget.zone)
    };
    assert_eq!(run(NOW), (Status::Bogus(Bogus::Signature), 3, name("example.")));
    assert_eq!(run(NOW + BOGUS_TTL - 1), (Status::Bogus(Bogus::Signature), 0, name("example.")), "remembered, with the zone to blame");
    // The root's keys are still remembered (TTL 300); example.'s set is asked again.
    assert_eq!(run(NOW + BOGUS_TTL), (Status::Bogus(Bogus::Signature), 2, name("example.")));
}

/// The remembered chains stay within MAX_REMEMBERED_CHAINS: when full,
/// those past their time go first, and only if none has gone, all of them;
/// a bogus link is kept at most BOGUS_TTL, a transient failure not at all.
#[test]
fn remembered_chains_are_bounded_from_both_sides() {
    let mut c = Chains::default();
    let sc = (1, 0);
    let zone = |i: usize| name(&format!("z{i}.test."));
    // Full: half of them until NOW + 10, half until NOW + 1000.
    for i in 0..MAX_REMEMBERED_CHAINS {
        c.put(sc, &zone(i), &Keys::Insecure, if i % 2 == 0 { NOW + 10 } else { NOW + 1000 }, NOW, &[]);
    }
    assert_eq!(c.map.len(), MAX_REMEMBERED_CHAINS);
    // One more past the short ones' time: they go, the others stay.
    c.put(sc, &name("new.test."), &Keys::Insecure, NOW + 1000, NOW + 20, &[]);
    assert_eq!(c.map.len(), MAX_REMEMBERED_CHAINS / 2 + 1);
    assert!(c.get(sc, &zone(1), NOW + 20).is_some() && c.get(sc, &zone(0), NOW + 20).is_none());
    // Full of live ones: one remembered again replaces itself; a new one
    // makes all go, then is kept.
    let mut c = Chains::default();
    for i in 0..MAX_REMEMBERED_CHAINS {
        c.put(sc, &zone(i), &Keys::Insecure, NOW + 1000, NOW, &[]);
    }
    c.put(sc, &zone(7), &Keys::Insecure, NOW + 2000, NOW, &[]);
    assert_eq!(c.map.len(), MAX_REMEMBERED_CHAINS);
    c.put(sc, &name("last.test."), &Keys::Insecure, NOW + 1000, NOW, &[]);
    assert_eq!(c.map.len(), 1);
    // A bogus link: at most BOGUS_TTL, whatever its sets' TTL; a transient failure: not kept.
    c.put(sc, &name("bad.test."), &Keys::Bogus(Bogus::Signature), NOW + 1000, NOW, &name("bad.test."));
    assert_eq!(c.get(sc, &name("bad.test."), NOW).map(|(_, until, _)| *until), Some(NOW + BOGUS_TTL));
    c.put(sc, &name("gone.test."), &Keys::Bogus(Bogus::ChainUnavailable), NOW + 1000, NOW, &[]);
    assert!(c.get(sc, &name("gone.test."), NOW).is_none());
}
