//! The command line (SPEC.md §1): `serve`, `check`, `explain`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use hickory_proto::rr::{Name, RecordType};

use crate::config::{Diagnostics, ServerConfig};
use crate::explain::{Asker, explain};
use crate::snapshot::Snapshot;

/// Exit code: invalid data (`check`).
pub const EXIT_INVALID: u8 = 1;
/// Exit code: cannot start (bad config, port in use).
pub const EXIT_CANNOT_START: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "pzdns", version, about = "A DNS server for private zones bound to VPCs", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load and validate everything `serve` would load; print every problem
    /// as path:line:column: message; exit 0 if clean, 1 if not.
    Check(CheckArgs),
    /// Offline: show how a query would be answered from a VPC.
    Explain(ExplainArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// The configuration file (default: ./pzdns.yaml if present, else built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The zones directory (overrides `zones_dir`).
    #[arg(long, value_name = "DIR")]
    pub zones: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("asker").required(true).args(["vpc", "from"])))]
pub struct ExplainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Ask as a client of this VPC.
    #[arg(long, value_name = "ID")]
    pub vpc: Option<String>,
    /// Ask from this source address (the view is chosen as for a real query).
    #[arg(long, value_name = "IP")]
    pub from: Option<IpAddr>,
    /// The name asked.
    pub name: String,
    /// The type asked (default A).
    #[arg(default_value = "A")]
    pub qtype: String,
}

/// Loads the server configuration with `--config`/`--zones` applied.
pub fn load_config(data: &DataArgs) -> Result<ServerConfig, Diagnostics> {
    let mut cfg = ServerConfig::load(data.config.as_deref())?;
    if let Some(z) = &data.zones {
        cfg.zones_dir = z.clone();
    }
    Ok(cfg)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(a) => check(&a),
        Command::Explain(a) => run_explain(&a),
    }
}

fn print_problems(d: &Diagnostics) {
    print!("{d}");
    println!(
        "{} problem{} found",
        d.len(),
        if d.len() == 1 { "" } else { "s" }
    );
}

fn check(a: &CheckArgs) -> ExitCode {
    let cfg = match load_config(&a.data) {
        Ok(c) => c,
        Err(d) => {
            print_problems(&d);
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let started = std::time::Instant::now();
    match Snapshot::load(&cfg, 1) {
        Ok(s) => {
            let st = s.stats;
            println!(
                "ok: {} zones, {} records, {} VPCs, {} endpoints ({} endpoint names) from {} files in {} ({} ms)",
                st.zones,
                st.records,
                st.vpcs,
                st.endpoints,
                st.endpoint_names,
                st.files,
                cfg.zones_dir.display(),
                started.elapsed().as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(d) => {
            print_problems(&d);
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn run_explain(a: &ExplainArgs) -> ExitCode {
    let loaded = load_config(&a.data).and_then(|cfg| Snapshot::load(&cfg, 1));
    let snap = match loaded {
        Ok(s) => s,
        Err(d) => {
            eprint!("{d}");
            eprintln!(
                "pzdns: cannot explain: the data has {} problem(s); run `pzdns check`",
                d.len()
            );
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let name = match Name::from_str(&a.name) {
        Ok(mut n) => {
            n.set_fqdn(true);
            n
        }
        Err(e) => {
            eprintln!("pzdns: `{}` is not a domain name: {e}", a.name);
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    let qtype = match RecordType::from_str(&a.qtype.to_ascii_uppercase()) {
        Ok(t) => t,
        Err(_) => {
            eprintln!(
                "pzdns: `{}` is not a record type (e.g. A, AAAA, CNAME, TXT)",
                a.qtype
            );
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    let asker = match (&a.vpc, a.from) {
        (Some(v), _) => Asker::Vpc(v.clone()),
        (None, Some(ip)) => Asker::From(ip),
        (None, None) => unreachable!("clap requires --vpc or --from"),
    };
    match explain(&snap, &asker, &name, qtype) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pzdns: {e}");
            ExitCode::from(EXIT_CANNOT_START)
        }
    }
}
