//! Link options for the `erlmcp-bot` executable.
//!
//! The executable is position-independent, so the dynamic loader relocates every pointer
//! in its read-only tables at start-up. Each of those relocations is 24 bytes in
//! `.rela.dyn` (megabytes of it), and the loader reads all of them before `main`: pages of
//! the binary that stay resident for the life of the process. `-z pack-relative-relocs`
//! stores the same relocations as a bitmap (`.relr.dyn`, a few kilobytes). glibc reads it
//! since 2.36 (Debian 12, the image we ship on); the linker records that requirement as a
//! versioned dependency, so an older glibc refuses the binary by name instead of crashing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
