//! Checks of the workspace as a whole, which no one crate's tests can make: every crate's README
//! runs as a doc test, its examples can be pasted into a new project with the dependency lines
//! it shows, and every crate ships both licence texts.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Path roots that are not crates a project depends on.
const NOT_CRATES: &[&str] = &[
    "std", "core", "alloc", "crate", "self", "super", "u8", "u16", "u32", "u64", "u128", "usize",
    "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64", "bool", "char", "str",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The directories of the crates under `crates/`, each with its name.
fn crates() -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir(root().join("crates"))
        .expect("crates/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .map(|dir| {
            let name = dir
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            (name, dir)
        })
        .collect();
    found.sort();
    assert!(
        found.len() >= 6,
        "crates/ holds the workspace's crates: {found:?}"
    );
    found
}

/// Whether `lib` hands `README.md` to rustdoc as documentation that is doc-tested: the crate's
/// own docs (`#![doc = ...]`), or an item's docs under `#[cfg(doctest)]`.
fn includes_readme(lib: &str) -> bool {
    let lib: String = lib.split_whitespace().collect();
    let include = r#"doc=include_str!("../README.md")]"#;
    lib.contains(&format!("#![{include}")) || lib.contains(&format!("#[cfg(doctest)]#[{include}"))
}

/// The fenced code blocks of a Markdown text: each block's info string and its body.
fn code_blocks(markdown: &str) -> Vec<(&str, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push((info.trim(), body.join("\n")));
        }
    }
    blocks
}

/// The crates that `code` names at the start of a path (`bytes::Bytes`, `tokio::main`), with
/// underscores as hyphens, as a manifest names them. Names a `use` brought in (`oneshot` after
/// `use tokio::sync::oneshot;`) are not crates.
fn crates_named(code: &str) -> BTreeSet<String> {
    let imported = imported_names(code);
    let mut named = BTreeSet::new();
    for (i, _) in code.match_indices("::") {
        let (before, word) = code[..i].split_at(i - ident_len_before(code, i));
        let starts_path = !before.ends_with("::");
        if starts_path
            && word.starts_with(|c: char| c.is_ascii_lowercase())
            && !NOT_CRATES.contains(&word)
            && !imported.contains(word)
        {
            named.insert(word.replace('_', "-"));
        }
    }
    named
}

/// The names `use` statements bring into scope: in each, the identifiers not followed by `::`.
fn imported_names(code: &str) -> BTreeSet<&str> {
    let mut imported = BTreeSet::new();
    for line in code.lines() {
        let Some(body) = line.trim_start().strip_prefix("use ") else {
            continue;
        };
        for (end, _) in body.match_indices(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let len = ident_len_before(body, end);
            if len > 0 && !body[end..].starts_with("::") {
                imported.insert(&body[end - len..end]);
            }
        }
    }
    imported
}

/// How many bytes of identifier end at byte `end` of `text` (ASCII only, so a char boundary).
fn ident_len_before(text: &str, end: usize) -> usize {
    text[..end]
        .bytes()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count()
}

/// What keeps a README's Rust examples from running when pasted into a new project with the
/// README's `[dependencies]` lines; empty when nothing does.
fn paste_problems(readme: &str) -> Vec<String> {
    let blocks = code_blocks(readme);
    let deps: Vec<&String> = blocks
        .iter()
        .filter(|(info, body)| *info == "toml" && body.contains("[dependencies]"))
        .map(|(_, body)| body)
        .collect();
    let [deps] = deps[..] else {
        return vec![format!("{} [dependencies] blocks, not one", deps.len())];
    };
    let listed: BTreeSet<String> = deps
        .lines()
        .filter_map(|l| {
            l.split_once(" = ")
                .map(|(name, _)| name.trim().replace('_', "-"))
        })
        .collect();
    let tokio_line = deps.lines().find(|l| l.starts_with("tokio ")).unwrap_or("");

    let mut problems = Vec::new();
    let rust = blocks
        .iter()
        .filter(|(info, _)| info.split(',').next() == Some("rust"));
    for (n, (_, code)) in rust.enumerate() {
        let mut problem = |what: String| problems.push(format!("example {n}: {what}"));
        // Rustdoc hides `# ` lines from the page, so a reader who pastes lacks them.
        if let Some(hidden) = code.lines().find(|l| *l == "#" || l.starts_with("# ")) {
            problem(format!("a hidden line: {hidden}"));
        }
        if !code.contains("fn main") {
            problem("no fn main: pasted into main.rs it does not build".into());
        }
        for name in crates_named(code).difference(&listed) {
            problem(format!("uses `{name}`, which [dependencies] does not name"));
        }
        if code.contains("#[tokio::main") {
            let runtime = if code.contains("current_thread") {
                "\"rt\""
            } else {
                "\"rt-multi-thread\""
            };
            for feature in ["\"macros\"", runtime] {
                if !tokio_line.contains(feature) {
                    problem(format!("#[tokio::main] needs tokio's {feature} feature"));
                }
            }
        }
    }
    problems
}

#[test]
fn every_crate_readme_runs_as_a_doc_test() {
    for (name, dir) in crates() {
        let manifest = read(&dir.join("Cargo.toml"));
        if !dir.join("README.md").is_file() {
            assert!(
                manifest.contains("publish = false"),
                "{name} is published without a README of its own"
            );
            continue;
        }
        assert!(
            includes_readme(&read(&dir.join("src/lib.rs"))),
            "{name}'s src/lib.rs does not doc-test its README: add\n\
             #[cfg(doctest)]\n#[doc = include_str!(\"../README.md\")]\nstruct ReadmeDoctests;"
        );
    }
}

#[test]
fn readme_examples_run_when_pasted_with_their_dependency_lines() {
    for (name, dir) in crates() {
        let Ok(readme) = fs::read_to_string(dir.join("README.md")) else {
            continue;
        };
        let problems = paste_problems(&readme);
        assert!(problems.is_empty(), "{name}'s README: {problems:#?}");
    }
}

#[test]
fn the_paste_checks_find_what_they_look_for() {
    let readme = "```toml\n[dependencies]\nalo-lru = \"0.1\"\ntokio = { version = \"1\" }\n```\n\
                  ```rust\n#[tokio::main]\nasync fn main() {\n# let x = 1;\n\
                  use tokio::sync::oneshot;\nlet _ = oneshot::channel::<()>();\n\
                  let b = bytes::Bytes::new(); alo_lru::Lru::<u8, u8>::new(1); std::mem::drop(b);\n}\n```\n";
    let problems = paste_problems(readme);
    for expected in [
        "hidden line",
        "`bytes`",
        "\"macros\"",
        "\"rt-multi-thread\"",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(includes_readme(
        "#[cfg(doctest)]\n#[doc = include_str!(\"../README.md\")]\nstruct R;"
    ));
    assert!(!includes_readme("//! See the README.\n"));
}

#[test]
fn every_crate_ships_both_licence_texts() {
    for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
        let text = read(&root().join(file));
        for (name, dir) in crates() {
            assert_eq!(
                read(&dir.join(file)),
                text,
                "{name}/{file} differs from the root's"
            );
        }
    }
}
