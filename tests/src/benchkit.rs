//! What the bench programs (`src/bin/bench_*.rs`) share: their command line, the `BENCH`
//! lines `bench_table` reads, and readings of the bot process from `/proc`.
//!
//! Output contract: one line per figure and measured run on stdout,
//! `BENCH<TAB>section<TAB>row<TAB>column<TAB>value`, and an optional
//! `BENCHNOTE<TAB>section<TAB>text`; everything else goes to stderr.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// The flags every bench program takes.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub runs: usize,
    pub quick: bool,
    pub postgres: Option<String>,
    pub bot: PathBuf,
}

impl BenchArgs {
    /// Parses `--runs N --quick --postgres URL --bot PATH`; prints usage and exits 2 on
    /// anything else.
    pub fn parse(program: &str) -> BenchArgs {
        match Self::from(std::env::args().skip(1)) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{program}: {e}");
                eprintln!(
                    "usage: {program} [--runs N] [--quick] [--postgres URL] [--bot PATH]   (default: --runs 3 --bot target/release/erlmcp-bot)"
                );
                std::process::exit(2);
            }
        }
    }

    pub fn from(args: impl IntoIterator<Item = String>) -> Result<BenchArgs, String> {
        let mut out = BenchArgs {
            runs: 3,
            quick: false,
            postgres: None,
            bot: PathBuf::from("target/release/erlmcp-bot"),
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--runs" => {
                    out.runs = value("--runs")?
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or("--runs takes a positive number")?;
                }
                "--quick" => out.quick = true,
                "--postgres" => out.postgres = Some(value("--postgres")?),
                "--bot" => out.bot = PathBuf::from(value("--bot")?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(out)
    }

    /// The bot binary, checked to exist (it is built by `scripts/bench`).
    pub fn bot_binary(&self) -> PathBuf {
        if !self.bot.is_file() {
            eprintln!(
                "no bot binary at {} (build it: cargo build --release -p erlmcp-bot)",
                self.bot.display()
            );
            std::process::exit(2);
        }
        std::fs::canonicalize(&self.bot).unwrap_or_else(|_| self.bot.clone())
    }
}

/// One figure of one run. `value` is a plain number; the unit is in `column`.
pub fn emit(section: &str, row: &str, column: &str, value: f64) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "BENCH\t{section}\t{row}\t{column}\t{value}");
    let _ = out.flush();
}

/// A line printed once under the section's table (a target, a verdict, how it was measured).
pub fn note(section: &str, text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "BENCHNOTE\t{section}\t{text}");
    let _ = out.flush();
}

/// A `VmRSS`/`VmHWM`-style field of `/proc/PID/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Resident memory now, in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    proc_status_kib(pid, "VmRSS").map(|k| k as f64 / 1024.0)
}

/// Peak resident memory so far, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    proc_status_kib(pid, "VmHWM").map(|k| k as f64 / 1024.0)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The status code of `GET path` on `addr`, over a fresh connection; `None` while nothing
/// answers. Deliberately minimal, so polling costs the measured process little.
pub fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let _ = s.set_nodelay(true);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return None,
        }
    }
    let text = std::str::from_utf8(&head[..got]).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Median, min and max of `values` (not empty).
pub fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// The `q` quantile (0–1) of sorted `values`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults_and_refuse_strangers() {
        let a = BenchArgs::from(Vec::<String>::new()).unwrap();
        assert_eq!((a.runs, a.quick, a.postgres), (3, false, None));
        let a = BenchArgs::from(
            [
                "--runs",
                "5",
                "--quick",
                "--postgres",
                "postgres://x/y",
                "--bot",
                "b",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(a.runs, 5);
        assert!(a.quick);
        assert_eq!(a.postgres.as_deref(), Some("postgres://x/y"));
        assert_eq!(a.bot, PathBuf::from("b"));
        assert!(BenchArgs::from(["--runs", "0"].map(String::from)).is_err());
        assert!(BenchArgs::from(["--runs"].map(String::from)).is_err());
        assert!(BenchArgs::from(["--fast"].map(String::from)).is_err());
    }

    #[test]
    fn median_min_max_and_quantiles() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), 50.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(quantile(&sorted, 1.0), 100.0);
    }
}
