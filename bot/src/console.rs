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
use erlmcp_adapters::local::{DEPLOYMENTS, LocalEvent, MessageView, Tone};
use rustyline::ExternalPrinter;
use tokio::sync::{broadcast, mpsc, oneshot};

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
#[derive(Clone)]
pub enum Output {
    Stdout,
    Terminal(Arc<std::sync::Mutex<Box<dyn ExternalPrinter + Send>>>),
}

impl Output {
    /// Prints `text` as it is (blocks end with a blank line).
    pub fn print(&self, text: &str) {
        match self {
            Output::Stdout => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(text.as_bytes());
                let _ = o.flush();
            }
            Output::Terminal(p) => {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                let _ = p.print(text.trim_end_matches('\n').to_string() + "\n");
            }
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
        let seen = (m.text.clone(), m.edits);
        if self.printed.get(&m.id) == Some(&seen) {
            return;
        }
        self.printed.insert(m.id, seen);
        self.out.print(&format!("{}\n", block(m)));
    }
}

async fn print_events(
    mut live: broadcast::Receiver<erlmcp_adapters::local::Sequenced>,
    out: Output,
    mut finish: oneshot::Receiver<()>,
) {
    let mut p = Printer {
        out,
        printed: HashMap::new(),
        channels: Vec::new(),
    };
    loop {
        tokio::select! {
            biased;
            ev = live.recv() => match ev {
                Ok(e) => p.show(&e.event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    p.out.print(&format!("── ({n} messages were too many to show)\n\n"));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = &mut finish => {
                while let Ok(e) = live.try_recv() {
                    p.show(&e.event);
                }
                return;
            }
        }
    }
}

/// Runs the console on `lines` (stdin's lines) until they end or `/quit`, printing to
/// stdout. Returns once the work the lines started is done and shown.
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

    let follow = chat.follow(None);
    let (finish, finished) = oneshot::channel();
    let printer = tokio::spawn(print_events(follow.live, out.clone(), finished));

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

    let say = |line: String| out.print(&format!("{line}\n"));
    // On a terminal the next line is asked for, with its prompt, once the last one is done.
    let ask_line = |person: &str, channel: &str| {
        if let Some(a) = &ask {
            let _ = a.send(format!("{person} #{channel}> "));
        }
    };
    if ask.is_some() {
        say(format!(
            "erlmcp-bot console: speaking as {} in #{channel}. {HELP}",
            describe(&directory, &person)
        ));
    }
    loop {
        ask_line(&person, &channel);
        let Some(line) = lines.recv().await else {
            break;
        };
        match parse_line(&line) {
            Line::Nothing => {}
            Line::Quit => break,
            Line::Help => say(HELP.to_string()),
            Line::As(name) => match known(&directory, &name) {
                Ok(p) => {
                    person = p;
                    say(format!(
                        "── now speaking as {}\n",
                        describe(&directory, &person)
                    ));
                }
                Err(e) => say(format!("── {e}\n")),
            },
            Line::Join(c) => {
                if chat.has_channel(&c) {
                    channel = c;
                    say(format!("── now in #{channel}\n"));
                } else {
                    let names: Vec<String> = chat
                        .channels()
                        .into_iter()
                        .map(|c| format!("#{}", c.id))
                        .collect();
                    say(format!(
                        "── no channel #{c} (there are {})\n",
                        names.join(", ")
                    ));
                }
            }
            Line::Say(text) => {
                if let Err(e) = local
                    .say(&person, &channel, Asked::Command(text), None)
                    .await
                {
                    say(format!("── not taken: {e}\n"));
                }
                // One command at a time: its answer (and progress) before the next line.
                app.engine.wait_idle().await;
            }
        }
    }
    // What the lines started finishes and is shown before the console goes.
    app.engine.wait_idle().await;
    local.refresh_open_cards().await;
    refresher.abort();
    scheduler.abort();
    let _ = finish.send(());
    let _ = printer.await;
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
    pub lines: mpsc::Receiver<String>,
    pub out: Output,
    /// On a terminal: asks for the next line, with the prompt to show.
    pub ask: Option<std::sync::mpsc::Sender<String>>,
}

/// Stdin line by line, on a thread of its own (reading blocks). On a terminal, with a
/// prompt, line editing and history, and messages printed above the line being edited;
/// in a pipe, plain lines and plain output.
pub fn stdin_input() -> Input {
    use std::io::IsTerminal as _;
    let (tx, lines) = mpsc::channel(64);
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
                        if tx.blocking_send(line).is_err() {
                            break;
                        }
                    }
                    // Ctrl-D, Ctrl-C, or the terminal went away: the console ends.
                    Err(_) => break,
                }
            }
        });
        let printer: Box<dyn ExternalPrinter + Send> = Box::new(printer);
        return Input {
            lines,
            out: Output::Terminal(Arc::new(std::sync::Mutex::new(printer))),
            ask: Some(ask),
        };
    }
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    Input {
        lines,
        out: Output::Stdout,
        ask: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erlmcp_adapters::local::ProgressView;

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
