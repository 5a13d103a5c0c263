//! Link options for the `erlmcp-bot` executable.
//!
//! The executable is position-independent, so the dynamic loader relocates every pointer
//! in its read-only tables at start-up. Each of those relocations is 24 bytes in
//! `.rela.dyn` (megabytes of it), and the loader reads all of them before `main`: pages of
//! the binary that stay resident for the life of the process. `-z pack-relative-relocs`
//! stores the same relocations as a bitmap (`.relr.dyn`, a few kilobytes). glibc reads it
//! since 2.36 (Debian 12, the image we ship on); the linker records that requirement as a
//! versioned dependency, so an older glibc refuses the binary by name instead of crashing.
//!
//! Release builds also lay out first the functions a running bot uses (`link/hot-symbols.txt`,
//! made by `scripts/link-order`). The kernel maps code in 64 KiB windows around each page a
//! process touches, so start-up code scattered over 18 MiB of text left most of it resident;
//! packed together it is a few windows. Only lld (rustc's default linker on x86_64 Linux since
//! 1.90) and mold take the option: with another linker configured, or an older rustc, the
//! order is left out and the binary is the same but for its layout.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ERLMCP_LINK_ORDER");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("link")
        .join("hot-symbols.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    if wants_link_order(&os, &env) && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names from another build (a renamed function, a test build) are expected misses.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the link is a release one by rustc's own lld, the only case the list is made for.
fn wants_link_order(os: &str, env: &str) -> bool {
    if std::env::var("ERLMCP_LINK_ORDER").is_ok_and(|v| v == "0") {
        return false;
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || env != "gnu" || arch != "x86_64" {
        return false;
    }
    if std::env::var("PROFILE").ok().as_deref() != Some("release") {
        return false;
    }
    // A linker or linker flavour of the user's own choosing may be GNU ld, which has no
    // such option and would fail the link.
    if std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|k| flags.contains(k))
    {
        return false;
    }
    rustc_minor().is_some_and(|minor| minor >= 90)
}

/// The minor version of the rustc building this crate (`rustc 1.95.0 (…)` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}
