//! A small mutation fuzzer on proptest: seed inputs from a corpus directory
//! in the repository (`tests/fuzz/corpus/NAME/`), changed by a few random
//! mutations each case (bit flips, insertions of bytes or of tokens that
//! decoders trip on, deletions, splices from other seeds). cargo-fuzz needs
//! a nightly toolchain; this runs on stable in CI, for a bounded number of
//! cases (`LOOKOUT_FUZZ_CASES`, default 1,000), and proptest shrinks and
//! saves any failing case under `proptest-regressions/`.

use std::path::PathBuf;

use proptest::prelude::*;

/// The seeds of corpus `name`, in file-name order.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "corpus {} is empty", dir.display());
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Cases per fuzz test: enough to matter in CI, more on demand.
pub fn cases() -> u32 {
    std::env::var("LOOKOUT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// The random seed of a fuzz run: `LOOKOUT_FUZZ_SEED` when given; fixed
/// under CI (`CI` set), so a submission is judged on the same inputs every
/// time and a failure there reproduces; random otherwise, so runs on a
/// developer's machine explore. Found inputs go to the corpus either way.
pub fn rng_seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("LOOKOUT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => RngSeed::Fixed(seed),
        None if std::env::var_os("CI").is_some() => RngSeed::Fixed(20_261_201),
        None => RngSeed::Random,
    }
}

/// Fragments that decoders of JSON and YAML trip on.
const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "null",
    "true",
    "-",
    "0",
    "-1",
    "1e308",
    "-1e308",
    "18446744073709551616",
    "NaN",
    "\"\\u0000\"",
    "\"é\"",
    "\"9999-12-31T23:59:59Z\"",
    "\"+262142-01-01T00:00:00Z\"",
    "\"-262143-01-01T00:00:00Z\"",
    "\"0001-01-01T00:00:00Z\"",
    "&a",
    "*a",
    "<<",
    "!!binary",
    "${HOME}",
    "${",
    "\n  ",
    "\n- ",
    "\t",
    "#",
    "'",
    "|",
    ">",
    "---",
    "...",
    "~",
    "0x7fffffff",
    "999999999999d",
    "1ms",
    "-5s",
    "*/0 * * * *",
];

#[derive(Clone, Debug)]
pub enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Token {
        at: usize,
        token: usize,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Splice {
        from: usize,
        at: usize,
        start: usize,
        len: usize,
    },
    Repeat {
        at: usize,
        len: usize,
        times: usize,
    },
}

/// One to four mutations, tokens from `TOKENS`.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    mutations_with(TOKENS)
}

/// One to four mutations, tokens from `tokens` (a decoder's own fragments;
/// `apply_with` takes the same list).
pub fn mutations_with(tokens: &'static [&'static str]) -> impl Strategy<Value = Vec<Mutation>> {
    let token = move || {
        (any::<usize>(), 0..tokens.len()).prop_map(|(at, token)| Mutation::Token { at, token })
    };
    let one =
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
            (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
                .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
            // Tokens are the most productive: twice the weight.
            token(),
            token(),
            (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Delete { at, len }),
            (any::<usize>(), any::<usize>(), any::<usize>(), 1usize..64).prop_map(
                |(from, at, start, len)| Mutation::Splice {
                    from,
                    at,
                    start,
                    len
                }
            ),
            (any::<usize>(), 1usize..16, 2usize..200)
                .prop_map(|(at, len, times)| Mutation::Repeat { at, len, times }),
        ];
    proptest::collection::vec(one, 1..6)
}

/// `seed` changed by `mutations` (`seeds` give the splices their material).
pub fn apply(seed: &[u8], seeds: &[Vec<u8>], mutations: &[Mutation]) -> Vec<u8> {
    apply_with(seed, seeds, mutations, TOKENS)
}

/// `apply`, for mutations drawn by `mutations_with(tokens)`.
pub fn apply_with(
    seed: &[u8],
    seeds: &[Vec<u8>],
    mutations: &[Mutation],
    tokens: &[&str],
) -> Vec<u8> {
    let mut data = seed.to_vec();
    for mutation in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match mutation {
            Mutation::Flip { at: i, bit } => {
                if !data.is_empty() {
                    let i = i % data.len();
                    data[i] ^= 1 << bit;
                }
            }
            Mutation::Insert { at: i, bytes } => {
                let i = at(*i, data.len());
                data.splice(i..i, bytes.iter().copied());
            }
            Mutation::Token { at: i, token } => {
                let i = at(*i, data.len());
                data.splice(i..i, tokens[token % tokens.len()].bytes());
            }
            Mutation::Delete { at: i, len } => {
                if !data.is_empty() {
                    let i = i % data.len();
                    let end = (i + len).min(data.len());
                    data.drain(i..end);
                }
            }
            Mutation::Splice {
                from,
                at: i,
                start,
                len,
            } => {
                let other = &seeds[from % seeds.len()];
                if !other.is_empty() {
                    let start = start % other.len();
                    let end = (start + len).min(other.len());
                    let i = at(*i, data.len());
                    data.splice(i..i, other[start..end].iter().copied());
                }
            }
            Mutation::Repeat { at: i, len, times } => {
                if !data.is_empty() {
                    let i = i % data.len();
                    let end = (i + len).min(data.len());
                    let piece = data[i..end].to_vec();
                    for _ in 1..*times {
                        data.splice(end..end, piece.iter().copied());
                    }
                }
            }
        }
    }
    data
}
