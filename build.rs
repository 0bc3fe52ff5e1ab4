//! Links the `lookout` binary with packed relative relocations (DT_RELR)
//! when `LOOKOUT_PACKED_RELOCS=1`, as deploy/Dockerfile and
//! scripts/bench-peer build it. A position-independent Rust binary carries
//! one 24-byte relocation per pointer in its read-only data (62,000 of
//! them, 1.5 MB), which the loader reads at every start and which then
//! stays resident; packed, they take about 25 KB (#19: RSS at 10,000
//! checks). Opt-in because such a binary needs glibc 2.36 or later to
//! start (the linker, rust-lld by default, adds that requirement whatever
//! glibc the build host has): the image runs on Debian 12, but a plain
//! `cargo build` must run on older hosts too. The binary stays
//! position-independent.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=LOOKOUT_PACKED_RELOCS");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let wanted = std::env::var("LOOKOUT_PACKED_RELOCS").is_ok_and(|v| v == "1");
    if wanted && os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
