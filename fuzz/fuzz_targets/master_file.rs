//! RFC 1035 master-file import: any text parses or reports a problem with
//! a line number, never a panic.
#![no_main]

use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::Name;
use libfuzzer_sys::fuzz_target;
use pzdns::config::Diagnostics;
use pzdns::config::files::FileAccess;
use pzdns::config::master_file::parse_text;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // $INCLUDE goes through FileAccess rooted at a directory that does not
    // exist, so every include is refused without touching the disk.
    if text.len() > 4096 {
        return;
    }
    let mut d = Diagnostics::new();
    let access = FileAccess::new(Path::new("/nonexistent"), &[]);
    let _ = parse_text(Path::new("/nonexistent/fuzz.zone"), text, &Name::from_str("example.test.").unwrap(), &access, &mut d);
});
