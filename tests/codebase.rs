//! The codebase keeps its own map true: every source file opens with its
//! `//!` paragraph, `lib.rs`'s layout names every module it declares, and
//! ARCHITECTURE.md's code map has a row for each.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_opens_with_its_module_paragraph() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    assert!(files.len() > 30, "found the sources");
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();
    assert!(missing.is_empty(), "without a //! paragraph: {missing:?}");
}

/// The modules `src/lib.rs` declares.
fn modules() -> Vec<String> {
    std::fs::read_to_string(root().join("src/lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let declared = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("pub(crate) mod "))?;
            declared.strip_suffix(';')
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_layout_in_lib_rs_names_every_module() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let map: String = lib
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let modules = modules();
    assert!(modules.len() > 20, "found the modules");
    let unnamed: Vec<&String> = modules
        .iter()
        .filter(|m| !map.contains(&format!("`{m}`")))
        .collect();
    assert!(unnamed.is_empty(), "not in lib.rs's layout: {unnamed:?}");
}

#[test]
fn architecture_has_a_code_map_row_for_every_module() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let missing: Vec<String> = modules()
        .into_iter()
        .filter(|m| {
            !architecture.contains(&format!("| `{m}.rs` |"))
                && !architecture.contains(&format!("| `{m}/` |"))
        })
        .collect();
    assert!(missing.is_empty(), "no code map row: {missing:?}");
}
