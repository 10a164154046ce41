//! Response-policy list files: any text as an RPZ zone (first byte even)
//! or a domain list (odd) reads or reports problems, never panics; what
//! reads compiles into the query path's index, and every trigger name
//! (and a name below it) is matched without a panic.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::Name;
use libfuzzer_sys::fuzz_target;
use pzdns::config::policy::{Action, PolicyDef, RuleSetDef, Trigger, parse_domain_list, parse_rpz};
use pzdns::config::{Diagnostics, Pos};
use pzdns::config::files::FileAccess;
use pzdns::dns::names::KeyBuf;
use pzdns::snapshot::policy::Policies;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if text.len() > 4096 {
        return;
    }
    let mut d = Diagnostics::new();
    let mut warnings = Vec::new();
    let path: Arc<Path> = Arc::from(Path::new("/nonexistent/list"));
    // $INCLUDE goes through FileAccess rooted at a directory that does not
    // exist, so every include is refused without touching the disk.
    let access = FileAccess::new(Path::new("/nonexistent"), &[]);
    let rules = if mode % 2 == 0 {
        parse_rpz(&path, text, &access, &mut warnings, &mut d)
    } else {
        parse_domain_list(&path, text, Action::NxDomain, &mut d)
    };
    let names: Vec<Name> = rules
        .iter()
        .filter_map(|r| match &r.trigger {
            Trigger::Name { name, .. } | Trigger::Domain(name) => Some(name.clone()),
            Trigger::ResponseIp(_) => None,
        })
        .collect();
    let def = PolicyDef {
        name: "fuzz".into(),
        path: "/nonexistent/p.yaml".into(),
        pos: Pos::new(1, 1),
        vpcs: None,
        sets: vec![RuleSetDef { label: "fuzz: list".into(), ede: 15, rules, path: "/nonexistent/p.yaml".into(), pos: Pos::new(1, 1) }],
        warnings,
    };
    let p = Policies::build(vec![def], 1, &|_| Some(0), &mut d);
    for n in names {
        let _ = p.match_name(0, &KeyBuf::new(&n));
        if let Ok(child) = Name::from_ascii("x").and_then(|x| x.append_domain(&n)) {
            let _ = p.match_name(1, &KeyBuf::new(&child));
        }
    }
    let _ = p.match_ip(0, std::net::IpAddr::from([10, 0, 0, 1]));
});
