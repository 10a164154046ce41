//! Build information for `--version` and `pzdns_build_info`: the commit
//! (from `PZDNS_COMMIT`, else `git`, else `unknown`) and the compiler.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PZDNS_COMMIT");
    let out = |cmd: &str, args: &[&str]| -> Option<String> {
        let o = Command::new(cmd).args(args).output().ok()?;
        let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
        (o.status.success() && !s.is_empty()).then_some(s)
    };
    let commit = std::env::var("PZDNS_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| out("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rebuilt when HEAD moves (a commit, a checkout); a path that does not
    // exist would make every build run this again.
    for path in ["HEAD".to_string()].into_iter().chain(out("git", &["symbolic-ref", "-q", "HEAD"])) {
        if let Some(p) = out("git", &["rev-parse", "--git-path", &path])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = out(&rustc, &["--version"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PZDNS_COMMIT={commit}");
    println!("cargo:rustc-env=PZDNS_RUSTC={version}");
}
