//! `erlmcp-bot console --as alice` driven through a pipe, on the embedded default in a fresh
//! directory each run, the way other chat-bot frameworks' text backends are measured:
//! - 1,000 `whoami`, sequential (write one, read its answer, then the next) and in a burst
//!   (write them all, read every answer);
//! - 1,000 audited operations (`scale dev 3` / `scale dev 4` alternately: alice may scale
//!   without approval; each is recorded in the audit log before it runs and carried out on
//!   the sandbox), sequential and in a burst.
//!
//! The sandbox's pause between simulated rollout steps is set to 0 so the figures are the
//! bot's own work, not a simulated rollout's waits.
//!
//! Usage: bench_console [--runs N] [--quick] [--bot PATH]   (stdout: BENCH lines)

use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use erlmcp_tests::benchkit::{BenchArgs, emit, note, quantile};

const SECTION: &str = "console through a pipe (embedded default, SQLite)";
/// What the console prints for `/?`: steered by the console itself, no engine work, and
/// printed only after everything the lines before it started has been shown.
const SENTINEL: &str = "/?";
const SENTINEL_ANSWER: &str = "Type a command";
/// The header of a private answer to alice, once per `whoami`.
const WHOAMI_ANSWER: &str = "only alice sees this";

struct Console {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl Console {
    fn start(bot: &Path, dir: &Path) -> Console {
        let mut child = Command::new(bot)
            .args(["console", "--as", "alice"])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .env("ERLMCP_BOT__SANDBOX_STEP", "0s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn console");
        let stdin = BufWriter::new(child.stdin.take().expect("stdin"));
        let stdout = BufReader::with_capacity(1 << 16, child.stdout.take().expect("stdout"));
        Console {
            child,
            stdin: Some(stdin),
            stdout,
            line: String::new(),
        }
    }

    fn send(&mut self, line: &str) {
        let w = self.stdin.as_mut().expect("stdin open");
        writeln!(w, "{line}").expect("write to the console");
        w.flush().expect("flush to the console");
    }

    /// Reads lines until one contains `needle`; then, when `whole_block`, up to the blank
    /// line that ends its block.
    fn until(&mut self, needle: &str, whole_block: bool) {
        let mut found = false;
        loop {
            self.line.clear();
            let n = self.stdout.read_line(&mut self.line).expect("read console");
            assert!(n > 0, "the console ended before printing {needle:?}");
            if found && self.line.trim_end().is_empty() {
                return;
            }
            if !found && self.line.contains(needle) {
                if !whole_block {
                    return;
                }
                found = true;
            }
        }
    }

    /// Reads until `count` lines containing `needle` and the blank line after the last.
    fn count(&mut self, needle: &str, count: usize) {
        for _ in 0..count {
            self.until(needle, true);
        }
    }

    /// Closes stdin and waits for the console to finish.
    fn finish(mut self) {
        drop(self.stdin.take());
        let mut rest = String::new();
        while self
            .stdout
            .read_line(&mut rest)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            rest.clear();
        }
        match self.child.wait() {
            Ok(s) if s.success() => {}
            other => eprintln!("bench_console: the console ended with {other:?}"),
        }
    }
}

/// Commands/s and per-command latency of `n` commands sent one at a time.
fn sequential(
    c: &mut Console,
    row: &str,
    n: usize,
    command: impl Fn(usize) -> String,
    wait: impl Fn(&mut Console),
) {
    let mut each = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        c.send(&command(i));
        wait(c);
        each.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let took = started.elapsed().as_secs_f64();
    each.sort_by(|a, b| a.total_cmp(b));
    emit(SECTION, row, "commands/s", n as f64 / took);
    emit(SECTION, row, "p50 ms", quantile(&each, 0.5));
    emit(SECTION, row, "p99 ms", quantile(&each, 0.99));
    emit(SECTION, row, "max ms", quantile(&each, 1.0));
}

/// Commands/s of `n` commands written at once, from the first write to the last answer.
fn burst(
    c: &mut Console,
    row: &str,
    n: usize,
    command: impl Fn(usize) -> String + Send + 'static,
    wait: impl Fn(&mut Console),
) {
    let mut w = c.stdin.take().expect("stdin open");
    let started = Instant::now();
    // Written from a thread of its own: the console's answers fill the pipe back while
    // the commands are still being written.
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            writeln!(w, "{}", command(i)).expect("write to the console");
        }
        w.flush().expect("flush to the console");
        w
    });
    wait(c);
    let took = started.elapsed().as_secs_f64();
    c.stdin = Some(writer.join().expect("writer"));
    emit(SECTION, row, "commands/s", n as f64 / took);
}

fn scale(i: usize) -> String {
    format!("scale dev {}", 3 + i % 2)
}

fn run(bot: &Path, n: usize) {
    let dir = tempfile::tempdir().expect("scratch dir");
    let mut c = Console::start(bot, dir.path());
    // The first answer includes opening the store and the sandbox.
    c.send("whoami");
    c.until(WHOAMI_ANSWER, true);

    sequential(
        &mut c,
        "whoami, sequential",
        n,
        |_| "whoami".into(),
        |c| c.until(WHOAMI_ANSWER, true),
    );
    burst(
        &mut c,
        "whoami, burst",
        n,
        |_| "whoami".into(),
        move |c| c.count(WHOAMI_ANSWER, n),
    );
    sequential(
        &mut c,
        "audited scale, sequential",
        n,
        |i| format!("{}\n{SENTINEL}", scale(i)),
        |c| c.until(SENTINEL_ANSWER, false),
    );
    burst(
        &mut c,
        "audited scale, burst",
        n,
        move |i| {
            if i + 1 == n {
                format!("{}\n{SENTINEL}", scale(i))
            } else {
                scale(i)
            }
        },
        |c| c.until(SENTINEL_ANSWER, false),
    );
    c.finish();
}

fn main() {
    let args = BenchArgs::parse("bench_console");
    let bot = args.bot_binary();
    if args.postgres.is_some() {
        eprintln!(
            "bench_console: the console is measured on its embedded default (SQLite); --postgres is not used"
        );
    } else {
        eprintln!("SKIPPED postgres (bench_console measures the embedded default, SQLite, only)");
    }
    let n = if args.quick { 100 } else { 1_000 };
    for i in 0..args.runs {
        eprintln!("bench_console: run {} of {}", i + 1, args.runs);
        let t = Instant::now();
        run(&bot, n);
        eprintln!("bench_console: run took {:.1} s", t.elapsed().as_secs_f64());
    }
    note(
        SECTION,
        &format!(
            "{n} commands per row as alice. Target: ≥ 30,000 `whoami`/s in a burst. Latency is write → the answer's last line read back. An audited scale writes its request and audit rows durably (synchronous=FULL) before it runs on the sandbox (rollout step pause 0); sequential audited rows end with `/?`, which the console answers only once the operation's messages are all printed."
        ),
    );
}
