//! A zone file's YAML: any text is either a zone or a list of problems,
//! never a panic; a zone that loads also builds into a snapshot.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pzdns::config::zones_dir::{ZonesData, VpcDef, load_zone_text};
use pzdns::config::files::FileAccess;
use pzdns::config::{Diagnostics, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // No master files from the fuzzer: they would read the disk.
    if text.contains("master_file") {
        return;
    }
    let known: HashSet<String> = ["vpc-a".to_string(), "vpc-b".to_string()].into();
    let mut d = Diagnostics::new();
    let access = FileAccess::new(Path::new("/nonexistent"), &[]);
    if let Some(z) = load_zone_text(Path::new("fuzz.yaml"), text, &known, &access, &mut d) {
        let vpcs = ["vpc-a", "vpc-b"]
            .iter()
            .enumerate()
            .map(|(i, id)| VpcDef { id: id.to_string(), region: None, cidrs: vec![format!("10.{i}.0.0/16").parse().unwrap()], vswitches: vec![] })
            .collect();
        let data = ZonesData { vpcs, zones: vec![z], ..Default::default() };
        let _ = pzdns::loader::build(&ServerConfig::defaults(), data, 1);
    }
    for p in d.items() {
        let _ = p.to_string();
    }
});
