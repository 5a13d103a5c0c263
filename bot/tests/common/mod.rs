//! What the tests that drive the real binary share.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_erlmcp-bot");

/// Runs the binary in `dir` with these variables set and `RUST_LOG` unset, so its output is
/// only what the command prints.
pub fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run erlmcp-bot")
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    run_env(dir, args, &[])
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A port free a moment ago, for a `serve` under test.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}
