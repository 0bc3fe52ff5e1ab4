//! Links the `lookout` binary with packed relative relocations (DT_RELR) on
//! GNU/Linux. A position-independent Rust binary carries one 24-byte
//! relocation per pointer in its read-only data (62,000 of them, 1.5 MB),
//! which the loader reads at every start and which then stays resident;
//! packed, they take a few kilobytes (#19: RSS at 10,000 checks). GNU ld
//! 2.38 and glibc 2.36 (Debian 12, the image deploy/Dockerfile builds on)
//! support them; the binary stays position-independent.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
