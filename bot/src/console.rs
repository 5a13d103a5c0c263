//! `erlmcp-bot console --as NAME`: the local chat in a terminal. Lines read from stdin are
//! said in the chat as NAME; every message the bot posts there (replies, progress, cards
//! redrawn as others vote, incident updates from the scheduler) is printed as one block.
//!
//! Lines starting with `/as`, `/join` or `/quit` steer the console itself; anything else
//! is a command, with or without the slash command in front.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use erlmcp_adapters::chat::Asked;
use erlmcp_adapters::local::web::Directory;
use erlmcp_adapters::local::{DEPLOYMENTS, LocalEvent, MessageView, Sequenced, Tone};
use rustyline::ExternalPrinter;
use tokio::sync::{broadcast, mpsc};

use crate::app::App;
use crate::scheduler::Scheduler;

/// How often cards are redrawn from the store, for votes cast elsewhere.
const CARD_REFRESH: Duration = Duration::from_secs(1);
/// How often the scheduler looks for due work (incident updates, expiries).
const SCHEDULER_TICK: Duration = Duration::from_secs(5);

/// What a console line asks of the console itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Nothing,
    As(String),
    Join(String),
    Quit,
    Help,
    Say(String),
}

pub fn parse_line(line: &str) -> Line {
    let t = line.trim();
    let (head, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    match head {
        "" => Line::Nothing,
        "/as" => Line::As(rest.to_string()),
        "/join" => Line::Join(rest.trim_start_matches('#').to_string()),
        "/quit" | "/exit" => Line::Quit,
        "/?" => Line::Help,
        _ => Line::Say(t.to_string()),
    }
}

const HELP: &str = "Type a command (`help` lists them); `/as NAME` speaks as someone else, `/join CHANNEL` moves to a channel, `/quit` leaves.";

/// A message as one block of text.
pub fn block(m: &MessageView) -> String {
    let mut head = format!("#{}", m.channel);
    if let Some(parent) = m.thread {
        head.push_str(&format!(" › thread {parent}"));
    }
    head.push_str(&format!(" · {} · {}", m.from, m.at));
    if m.edits > 0 {
        head.push_str(" · updated");
    }
    if let Some(p) = &m.only_for {
        head.push_str(&format!(" · only {p} sees this"));
    }
    let mut out = format!("── {head}\n{}", m.text.trim_end());
    if let Some(p) = m.progress {
        out.push_str(&format!("\n[{}/{} updated]", p.done, p.total));
    }
    out.push('\n');
    out
}

/// Where the console writes: stdout, or above the prompt while a line is being edited.
pub enum Output {
    /// Buffered: flushed whenever the console is about to wait (for a line, or for a
    /// command still running), so a script piping many lines in gets them answered in a
    /// few large writes, and one typing a line at a time sees each answer at once.
    Stdout(std::io::BufWriter<std::io::Stdout>),
    Terminal(Box<dyn ExternalPrinter + Send>),
}

impl Output {
    pub fn stdout() -> Output {
        Output::Stdout(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ))
    }

    /// Prints `text` as it is (blocks end with a blank line).
    pub fn print(&mut self, text: &str) {
        match self {
            Output::Stdout(o) => {
                let _ = o.write_all(text.as_bytes());
            }
            Output::Terminal(p) => {
                let _ = p.print(text.trim_end_matches('\n').to_string() + "\n");
            }
        }
    }

    pub fn flush(&mut self) {
        if let Output::Stdout(o) = self {
            let _ = o.flush();
        }
    }
}

/// Prints what the chat shows, once per change a reader would notice.
struct Printer {
    out: Output,
    /// Text and edit count last printed per message.
    printed: HashMap<u64, (String, u32)>,
    channels: Vec<String>,
}

impl Printer {
    fn show(&mut self, event: &LocalEvent) {
        match event {
            LocalEvent::Snapshot { channels, messages } => {
                self.channels = channels.iter().map(|c| c.id.clone()).collect();
                for m in messages {
                    self.message(m);
                }
            }
            LocalEvent::Channel { channel } => {
                if !self.channels.contains(&channel.id) {
                    self.channels.push(channel.id.clone());
                    self.out.print(&format!("── #{} opened\n\n", channel.id));
                }
            }
            LocalEvent::Message { message } => self.message(message),
        }
    }

    fn message(&mut self, m: &MessageView) {
        // What the person typed is on their screen already.
        if m.tone == Tone::Person {
            return;
        }
        if self
            .printed
            .get(&m.id)
            .is_some_and(|(text, edits)| *edits == m.edits && *text == m.text)
        {
            return;
        }
        self.printed.insert(m.id, (m.text.clone(), m.edits));
        let mut text = block(m);
        text.push('\n');
        self.out.print(&text);
    }

    fn received(&mut self, ev: Result<Sequenced, broadcast::error::RecvError>) -> Followed {
        match ev {
            Ok(e) => self.show(&e.event),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.out
                    .print(&format!("── ({n} messages were too many to show)\n\n"));
            }
            Err(broadcast::error::RecvError::Closed) => return Followed::Closed,
        }
        Followed::Open
    }

    /// Shows every event already published, without waiting.
    fn catch_up(&mut self, live: &mut broadcast::Receiver<Sequenced>) {
        loop {
            match live.try_recv() {
                Ok(e) => self.show(&e.event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.out
                        .print(&format!("── ({n} messages were too many to show)\n\n"));
                }
                Err(_) => return,
            }
        }
    }
}

#[derive(PartialEq)]
enum Followed {
    Open,
    Closed,
}

/// While lines are still queued, output waiting on a long command is flushed this often,
/// so its progress shows without a write per message.
const QUEUED_FLUSH: Duration = Duration::from_millis(20);

/// Waits until the engine is idle, showing what it posts meanwhile. Output is flushed
/// before each wait; with more lines queued (`queued`), only every `QUEUED_FLUSH`.
async fn until_idle(
    app: &App,
    p: &mut Printer,
    live: &mut broadcast::Receiver<Sequenced>,
    queued: bool,
) {
    let idle = app.engine.wait_idle();
    tokio::pin!(idle);
    let mut open = true;
    let mut done = false;
    let mut flushed = tokio::time::Instant::now();
    loop {
        if open {
            p.catch_up(live);
        }
        if done {
            return;
        }
        // Often idle already (a lookup answers at once): then nothing needs flushing yet.
        if futures::poll!(&mut idle).is_ready() {
            done = true;
            continue;
        }
        if !queued || flushed.elapsed() >= QUEUED_FLUSH {
            p.out.flush();
            flushed = tokio::time::Instant::now();
        }
        tokio::select! {
            biased;
            ev = live.recv(), if open => open = p.received(ev) == Followed::Open,
            _ = &mut idle => done = true,
            _ = tokio::time::sleep_until(flushed + QUEUED_FLUSH), if queued => {}
        }
    }
}

/// Runs the console on `lines` (stdin's lines) until they end or `/quit`, printing to
/// `out`. Returns once the work the lines started is done and shown.
///
/// Everything is printed from this one task, in order: a line's answers (and progress) are
/// all shown before the next line is taken, and events posted in between (votes cast
/// elsewhere, scheduled updates) while it waits for a line.
pub async fn run(app: Arc<App>, person: String, input: Input) -> Result<(), String> {
    let Input {
        mut lines,
        out,
        ask,
    } = input;
    let Some(local) = app.local.clone() else {
        return Err("the local chat is not running".into());
    };
    let directory = crate::local::directory(&app.config);
    let mut person = known(&directory, &person)?;
    let mut channel = DEPLOYMENTS.to_string();
    let chat = local.chat().clone();

    let mut live = chat.follow(None).live;
    let mut p = Printer {
        out,
        printed: HashMap::new(),
        channels: Vec::new(),
    };

    let scheduler = {
        let scheduler = Scheduler::new(app.engine.clone(), app.engine.owner());
        if let Err(e) = scheduler.install().await {
            tracing::warn!(error = %e, "could not install the recurring jobs");
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SCHEDULER_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                scheduler.tick().await;
            }
        })
    };
    let ownership = app.engine.start_ownership().await;
    let refresher = {
        let local = local.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CARD_REFRESH).await;
                local.refresh_open_cards().await;
            }
        })
    };

    // On a terminal the next line is asked for, with its prompt, once the last one is done.
    let ask_line = |person: &str, channel: &str| {
        if let Some(a) = &ask {
            let _ = a.send(format!("{person} #{channel}> "));
        }
    };
    if ask.is_some() {
        p.out.print(&format!(
            "erlmcp-bot console: speaking as {} in #{channel}. {HELP}\n",
            describe(&directory, &person)
        ));
    }
    let mut queued: std::collections::VecDeque<String> = Default::default();
    let mut open = true;
    'lines: loop {
        p.catch_up(&mut live);
        let line = match queued.pop_front() {
            Some(l) => l,
            None => {
                ask_line(&person, &channel);
                // Waiting for a line: what was printed goes out now, and what others post
                // meanwhile is shown as it comes.
                loop {
                    p.out.flush();
                    tokio::select! {
                        batch = lines.recv() => match batch {
                            Some(batch) => {
                                queued.extend(batch);
                                break;
                            }
                            None => break 'lines,
                        },
                        ev = live.recv(), if open => open = p.received(ev) == Followed::Open,
                    }
                }
                match queued.pop_front() {
                    Some(l) => l,
                    None => continue,
                }
            }
        };
        match parse_line(&line) {
            Line::Nothing => {}
            Line::Quit => break,
            Line::Help => p.out.print(&format!("{HELP}\n")),
            Line::As(name) => match known(&directory, &name) {
                Ok(found) => {
                    person = found;
                    p.out.print(&format!(
                        "── now speaking as {}\n\n",
                        describe(&directory, &person)
                    ));
                }
                Err(e) => p.out.print(&format!("── {e}\n\n")),
            },
            Line::Join(c) => {
                if chat.has_channel(&c) {
                    channel = c;
                    p.out.print(&format!("── now in #{channel}\n\n"));
                } else {
                    let names: Vec<String> = chat
                        .channels()
                        .into_iter()
                        .map(|c| format!("#{}", c.id))
                        .collect();
                    p.out.print(&format!(
                        "── no channel #{c} (there are {})\n\n",
                        names.join(", ")
                    ));
                }
            }
            Line::Say(text) => {
                if let Err(e) = local
                    .say(&person, &channel, Asked::Command(text), None)
                    .await
                {
                    p.out.print(&format!("── not taken: {e}\n\n"));
                }
                // One command at a time: its answer (and progress) before the next line.
                until_idle(&app, &mut p, &mut live, !queued.is_empty()).await;
            }
        }
    }
    // What the lines started finishes and is shown before the console goes.
    until_idle(&app, &mut p, &mut live, false).await;
    local.refresh_open_cards().await;
    refresher.abort();
    scheduler.abort();
    p.catch_up(&mut live);
    p.out.flush();
    app.engine.flush_checkpoints().await;
    ownership.abort();
    Ok(())
}

fn known(directory: &Directory, name: &str) -> Result<String, String> {
    let name = name.trim().trim_start_matches('@');
    let name = name.strip_prefix("local:").unwrap_or(name);
    if directory.people.iter().any(|p| p.name == name) {
        return Ok(name.to_string());
    }
    let names: Vec<&str> = directory.people.iter().map(|p| p.name.as_str()).collect();
    Err(format!(
        "nobody called {name:?} here (people: {})",
        if names.is_empty() {
            "none configured".to_string()
        } else {
            names.join(", ")
        }
    ))
}

fn describe(directory: &Directory, name: &str) -> String {
    match directory.people.iter().find(|p| p.name == name) {
        Some(p) if !p.roles.is_empty() => format!("{name} ({})", p.roles.join(", ")),
        _ => format!("{name} (no role)"),
    }
}

/// What the console reads and where it writes.
pub struct Input {
    /// Lines in batches: whatever had arrived together.
    pub lines: mpsc::Receiver<Vec<String>>,
    pub out: Output,
    /// On a terminal: asks for the next line, with the prompt to show.
    pub ask: Option<std::sync::mpsc::Sender<String>>,
}

/// Stdin line by line, on a thread of its own (reading blocks). On a terminal, with a
/// prompt, line editing and history, and messages printed above the line being edited;
/// in a pipe, plain lines and plain output.
pub fn stdin_input() -> Input {
    use std::io::IsTerminal as _;
    let (tx, lines) = mpsc::channel(16);
    if std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && let Ok(mut editor) = rustyline::DefaultEditor::new()
        && let Ok(printer) = editor.create_external_printer()
    {
        let (ask, asked) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            while let Ok(p) = asked.recv() {
                match editor.readline(&p) {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            let _ = editor.add_history_entry(line.as_str());
                        }
                        if tx.blocking_send(vec![line]).is_err() {
                            break;
                        }
                    }
                    // Ctrl-D, Ctrl-C, or the terminal went away: the console ends.
                    Err(_) => break,
                }
            }
        });
        return Input {
            lines,
            out: Output::Terminal(Box::new(printer)),
            ask: Some(ask),
        };
    }
    std::thread::spawn(move || {
        let reader = std::io::BufReader::with_capacity(64 * 1024, std::io::stdin());
        pipe_lines(reader, |batch| tx.blocking_send(batch).is_ok());
    });
    Input {
        lines,
        out: Output::stdout(),
        ask: None,
    }
}

/// Reads lines from a pipe and hands them over in batches: every complete line already
/// read goes in one batch, so a burst of lines costs one hand-over per read rather than
/// one per line. Stops at the end of input, on a read error, or when `send` says no.
pub fn pipe_lines(mut reader: impl std::io::BufRead, mut send: impl FnMut(Vec<String>) -> bool) {
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut batch = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            partial.extend_from_slice(&rest[..nl]);
            batch.push(line_text(&mut partial));
            rest = &rest[nl + 1..];
        }
        partial.extend_from_slice(rest);
        let used = chunk.len();
        reader.consume(used);
        if !batch.is_empty() && !send(batch) {
            return;
        }
    }
    if !partial.is_empty() {
        let last = line_text(&mut partial);
        let _ = send(vec![last]);
    }
}

/// One line without its `\r`, lossily decoded; empties `buf`.
fn line_text(buf: &mut Vec<u8>) -> String {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    let line = String::from_utf8_lossy(buf).into_owned();
    buf.clear();
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use erlmcp_adapters::local::ProgressView;

    #[test]
    fn piped_lines_arrive_in_batches_as_they_were_read() {
        // A reader that hands out 7 bytes per read, so lines straddle reads.
        let input = b"whoami\r\nscale dev 3\n\n/quit\nno newline at the end";
        let reader = std::io::BufReader::with_capacity(7, &input[..]);
        let mut batches = Vec::new();
        pipe_lines(reader, |b| {
            batches.push(b);
            true
        });
        let all: Vec<String> = batches.iter().flatten().cloned().collect();
        assert_eq!(
            all,
            [
                "whoami",
                "scale dev 3",
                "",
                "/quit",
                "no newline at the end"
            ]
        );
        assert!(batches.iter().all(|b| !b.is_empty()));

        let big = "whoami\n".repeat(1000);
        let reader = std::io::BufReader::with_capacity(64 * 1024, big.as_bytes());
        let mut batches = Vec::new();
        pipe_lines(reader, |b| {
            batches.push(b.len());
            true
        });
        assert_eq!(batches, [1000], "one read, one batch");

        let mut calls = 0;
        pipe_lines(std::io::BufReader::with_capacity(7, &input[..]), |_| {
            calls += 1;
            false
        });
        assert_eq!(calls, 1, "a refused batch stops the reading");
    }

    #[test]
    fn console_lines_steer_or_say() {
        assert_eq!(parse_line("  "), Line::Nothing);
        assert_eq!(parse_line("/as bob"), Line::As("bob".into()));
        assert_eq!(
            parse_line("/join #incidents"),
            Line::Join("incidents".into())
        );
        assert_eq!(parse_line("/quit"), Line::Quit);
        assert_eq!(
            parse_line("/erlmcp deploy prod v3"),
            Line::Say("/erlmcp deploy prod v3".into())
        );
        assert_eq!(parse_line("whoami"), Line::Say("whoami".into()));
    }

    #[test]
    fn a_block_names_channel_thread_author_and_state() {
        let m = MessageView {
            id: 7,
            channel: "deployments".into(),
            thread: Some(5),
            from: "erlmcp-bot".into(),
            only_for: Some("alice".into()),
            tone: Tone::Ok,
            html: String::new(),
            text: "done\n".into(),
            request: None,
            progress: Some(ProgressView { done: 2, total: 5 }),
            at: "10:00:00".into(),
            edits: 1,
        };
        assert_eq!(
            block(&m),
            "── #deployments › thread 5 · erlmcp-bot · 10:00:00 · updated · only alice sees this\ndone\n[2/5 updated]\n"
        );
    }
}
