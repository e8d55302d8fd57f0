//! The shape of `src/`: no import circle between its files, and no file so long that it holds
//! more than one thing. Read from the source text, so it needs no tool beyond the test itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files allowed past [`MAX_LINES`], each with the reason.
const LONG_FILES: &[(&str, &str)] = &[];
const MAX_LINES: usize = 500;

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `audio/capture.rs` → `audio::capture`; `audio/mod.rs` → `audio`; `lib.rs` → the root.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file
        .strip_prefix(src)
        .expect("under src/")
        .with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The module paths a file names (`crate::a::b`, `super::c`), resolved to the files that exist.
fn imports(text: &str, module: &Module, known: &BTreeSet<Module>) -> BTreeSet<Module> {
    // Unit tests may reach anywhere; only the code itself counts.
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("::") {
        let start = code[..i]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        let end = code[i..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(code.len(), |p| i + p);
        let path: Vec<&str> = code[start..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .collect();
        let (base, rest): (Module, &[&str]) = match path.first() {
            Some(&"crate") => (Vec::new(), &path[1..]),
            Some(&"super") => (
                module[..module.len().saturating_sub(1)].to_vec(),
                &path[1..],
            ),
            _ => continue,
        };
        // The longest prefix that is a file of ours.
        let mut full = base.clone();
        full.extend(rest.iter().map(|s| s.to_string()));
        while !full.is_empty() && !known.contains(&full) {
            full.pop();
        }
        // A module's own children are its structure, not an import.
        if full != *module && !full.starts_with(module) && known.contains(&full) {
            found.insert(full);
        }
    }
    found
}

fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    // Tarjan's strongly connected components; any with two or more files is a circle.
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in &s.graph[v] {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn sources() -> (PathBuf, Vec<PathBuf>) {
    let src = testkit::root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    (src, files)
}

#[test]
fn no_import_circle_between_the_files_of_src() {
    let (src, files) = sources();
    // Test files (`*_tests.rs`, the session's test rig) are compiled for tests only.
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| {
            let name = f.file_stem().unwrap_or_default().to_string_lossy();
            !name.ends_with("_tests") && name != "test_rig"
        })
        .collect();
    let known: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).expect("a source file");
        graph.insert(module.clone(), imports(&text, &module, &known));
    }
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    let circles = cycles(&graph);
    eprintln!("{} files, {edges} imports between them", graph.len());
    assert!(
        circles.is_empty(),
        "files that import each other: {:?}",
        circles
            .iter()
            .map(|c| c.iter().map(|m| m.join("::")).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    assert!(edges > 50, "the import scan found too little to be trusted");
}

#[test]
fn no_file_in_src_is_longer_than_500_lines() {
    let (src, files) = sources();
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f)
                .expect("a source file")
                .lines()
                .count();
            let name = f.strip_prefix(&src).ok()?.to_string_lossy().into_owned();
            (lines > MAX_LINES && !LONG_FILES.iter().any(|(n, _)| *n == name))
                .then(|| format!("{name}: {lines} lines"))
        })
        .collect();
    assert!(long.is_empty(), "split these at their seams: {long:?}");
}
