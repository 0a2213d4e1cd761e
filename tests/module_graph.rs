//! The module graph of every crate in the workspace, read from the source text: the modules
//! (one per file) come in, and out comes a failure naming each circle between modules and each
//! import that runs up the pipeline (graph → autodiff → passes → kernel → codegen → export →
//! native).
//!
//! A reference is any `crate::`, `super::` or `self::` path, and a `use` whose first segment
//! is a child module. It is resolved to the deepest module file that exists. The check runs
//! per folder: the folder's children (a file, or a sub-folder with everything inside it) must
//! import one another one way only. A module naming its own ancestor (`super::Target` in
//! `codegen/body.rs`) or descendant is nesting, not a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module's path from its crate root, e.g. `["codegen", "body"]`.
type ModulePath = Vec<String>;

/// The crates of the workspace: their source folder and root file.
const CRATES: [(&str, &str); 5] = [
    ("compiler/src", "lib.rs"),
    ("runtime/src", "lib.rs"),
    ("macros/src", "lib.rs"),
    ("bench/src", "lib.rs"),
    ("src", "lib.rs"),
];

/// The compiler's stages in pipeline order: a stage may import the ones before it only. After
/// Cranelift code generation come the artifact's (export: the plan, the entry points and
/// objects, the portable C) and the native tier's vector C, which borrows the portable C's
/// helpers.
const PIPELINE: [&str; 7] = ["graph", "autodiff", "passes", "kernel", "codegen", "export", "native"];

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for (folder, root_file) in CRATES {
        let graph = crate_graph(&root.join(folder), root_file);
        for cycle in cycles(&graph) {
            problems.push(format!("{folder}: a circle: {}", cycle.join(" → ")));
        }
    }
    assert!(problems.is_empty(), "the module graph has circles:\n{}", problems.join("\n"));
}

#[test]
fn compiler_stages_import_only_earlier_stages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = crate_graph(&root.join("compiler/src"), "lib.rs");
    let mut problems = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            let stage = |name: &str| PIPELINE.iter().position(|stage| *stage == name);
            if let (Some(from_stage), Some(to_stage)) = (stage(from), stage(to))
                && to_stage > from_stage
            {
                problems.push(format!("{from} imports {to}, a later stage"));
            }
        }
    }
    assert!(problems.is_empty(), "imports run up the pipeline:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_a_circle_between_two_sibling_files() {
    let folder = std::env::temp_dir().join(format!("kiln-module-graph-{}", std::process::id()));
    fs::create_dir_all(folder.join("stage")).unwrap();
    fs::write(folder.join("lib.rs"), "mod stage;\nmod value;\n").unwrap();
    fs::write(folder.join("value.rs"), "// crate::stage in a comment is not an import\nuse crate::stage::Kind;\n")
        .unwrap();
    fs::write(folder.join("stage/mod.rs"), "mod body;\nmod loops;\npub use crate::value::Value;\n").unwrap();
    fs::write(folder.join("stage/body.rs"), "use super::{loops::LANES, Target};\n").unwrap();
    fs::write(folder.join("stage/loops.rs"), "fn f() { super::body::emit(); }\n").unwrap();
    let graph = crate_graph(&folder, "lib.rs");
    let found = cycles(&graph);
    fs::remove_dir_all(&folder).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.contains(&vec!["stage".to_string(), "value".to_string(), "stage".to_string()]), "{found:?}");
    let siblings = vec!["stage::body".to_string(), "stage::loops".to_string(), "stage::body".to_string()];
    assert!(found.contains(&siblings), "{found:?}");
}

/// The edges between sibling modules of one crate, keyed by module path joined with `::`.
fn crate_graph(source: &Path, root_file: &str) -> BTreeMap<String, BTreeSet<String>> {
    let modules = module_files(source, root_file);
    let known: BTreeSet<ModulePath> = modules.iter().map(|(path, _)| path.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = strip_comments_and_strings(&fs::read_to_string(file).unwrap());
        for reference in references(&text, module, &known) {
            let target = deepest_known(&reference, &known);
            if let Some((from, to)) = sibling_pair(module, &target) {
                edges.entry(from.join("::")).or_default().insert(to.join("::"));
            }
        }
    }
    edges
}

/// Every module file under `source`, with its module path.
fn module_files(source: &Path, root_file: &str) -> Vec<(ModulePath, PathBuf)> {
    let mut found = Vec::new();
    let mut pending = vec![source.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let relative = path.strip_prefix(source).unwrap();
                let mut module: ModulePath =
                    relative.iter().map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
                if module.last().is_some_and(|last| last == "mod") || relative == Path::new(root_file) {
                    module.pop();
                }
                found.push((module, path));
            }
        }
    }
    found.sort();
    found
}

/// The source with comments, string literals and character literals blanked out, so that a
/// path named in a doc comment or a message is not taken for an import.
fn strip_comments_and_strings(text: &str) -> String {
    let characters: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < characters.len() {
        let rest = &characters[index..];
        if rest.starts_with(&['/', '/']) {
            while index < characters.len() && characters[index] != '\n' {
                index += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while index < characters.len() {
                if characters[index..].starts_with(&['/', '*']) {
                    depth += 1;
                    index += 2;
                } else if characters[index..].starts_with(&['*', '/']) {
                    depth -= 1;
                    index += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    index += 1;
                }
            }
        } else if rest[0] == 'r'
            && rest.get(1).is_some_and(|next| *next == '#' || *next == '"')
            && !previous_is_identifier(&characters, index)
        {
            // A raw string: r"..." or r#"..."#.
            let hashes = rest[1..].iter().take_while(|character| **character == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                out.push(rest[0]);
                index += 1;
                continue;
            }
            index += 2 + hashes;
            while index < characters.len() {
                if characters[index] == '"'
                    && characters[index + 1..].iter().take(hashes).filter(|c| **c == '#').count() == hashes
                {
                    index += 1 + hashes;
                    break;
                }
                index += 1;
            }
            out.push_str("\"\"");
        } else if rest[0] == '"' {
            index += 1;
            while index < characters.len() && characters[index] != '"' {
                index += if characters[index] == '\\' { 2 } else { 1 };
            }
            index += 1;
            out.push_str("\"\"");
        } else if rest[0] == '\'' && (rest.get(2) == Some(&'\'') || rest.get(1) == Some(&'\\')) {
            // A character literal ('a', '\n', '\''), not a lifetime.
            index += 2;
            while index < characters.len() && characters[index] != '\'' {
                index += 1;
            }
            index += 1;
            out.push_str("' '");
        } else {
            out.push(rest[0]);
            index += 1;
        }
    }
    out
}

fn previous_is_identifier(characters: &[char], index: usize) -> bool {
    index > 0 && (characters[index - 1].is_alphanumeric() || characters[index - 1] == '_')
}

/// The tokens of stripped source: identifiers, `::`, and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let characters: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        let character = characters[index];
        if character.is_alphanumeric() || character == '_' {
            let start = index;
            while index < characters.len() && (characters[index].is_alphanumeric() || characters[index] == '_') {
                index += 1;
            }
            out.push(characters[start..index].iter().collect());
        } else if characters[index..].starts_with(&[':', ':']) {
            out.push("::".to_string());
            index += 2;
        } else {
            if !character.is_whitespace() {
                out.push(character.to_string());
            }
            index += 1;
        }
    }
    out
}

/// The absolute module paths a file refers to. Inline modules (`mod tests { ... }`) are
/// tracked, since `super::` inside one names the file's own module.
fn references(text: &str, module: &ModulePath, known: &BTreeSet<ModulePath>) -> Vec<ModulePath> {
    let tokens = tokens(text);
    let mut out = Vec::new();
    // Inline modules open around the current token: (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut index = 0;
    while index < tokens.len() {
        let token = tokens[index].as_str();
        let scope: ModulePath = module.iter().cloned().chain(inline.iter().map(|(name, _)| name.clone())).collect();
        let starts_path = index == 0 || tokens[index - 1] != "::";
        if token == "{" {
            depth += 1;
        } else if token == "}" {
            depth -= 1;
            if inline.last().is_some_and(|(_, closes)| *closes == depth) {
                inline.pop();
            }
        } else if token == "mod" && tokens.get(index + 2).is_some_and(|next| next == "{") {
            inline.push((tokens[index + 1].clone(), depth));
        } else if starts_path
            && matches!(token, "crate" | "super" | "self")
            && tokens.get(index + 1).is_some_and(|next| next == "::")
        {
            let (paths, _) = use_tree(&tokens, index);
            for path in paths {
                out.push(absolute(&path, &scope));
            }
        } else if token == "use" && tokens.get(index + 2).is_some_and(|next| next == "::") {
            // `use child::Item;`: a relative path to a child module of this one.
            let mut child = scope.clone();
            child.push(tokens[index + 1].clone());
            if known.contains(&child) {
                let (paths, _) = use_tree(&tokens, index + 1);
                for path in paths {
                    out.push(absolute(&path, &scope));
                }
            }
        }
        index += 1;
    }
    out
}

/// The paths of a use tree (or a plain path) starting at `tokens[start]`, with the index after it.
fn use_tree(tokens: &[String], start: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut index = start;
    loop {
        match tokens.get(index).map(String::as_str) {
            Some("{") => {
                let mut paths = Vec::new();
                index += 1;
                while index < tokens.len() && tokens[index] != "}" {
                    if tokens[index] == "," {
                        index += 1;
                        continue;
                    }
                    let (inner, next) = use_tree(tokens, index);
                    for path in inner {
                        paths.push(prefix.iter().cloned().chain(path).collect());
                    }
                    index = next;
                }
                return (paths, index + 1);
            }
            Some(token) if token.chars().all(|character| character.is_alphanumeric() || character == '_') => {
                prefix.push(token.to_string());
                index += 1;
                if tokens.get(index).map(String::as_str) == Some("::") {
                    index += 1;
                } else {
                    if tokens.get(index).map(String::as_str) == Some("as") {
                        index += 2;
                    }
                    return (vec![prefix], index);
                }
            }
            // `*`, or anything that ends the path.
            Some("*") => return (vec![prefix], index + 1),
            _ => return (vec![prefix], index),
        }
    }
}

/// A path made absolute (from its crate root): `crate::`, `super::` and `self::` resolved
/// against the scope it appears in; any other path is relative to that scope.
fn absolute(path: &[String], scope: &ModulePath) -> ModulePath {
    let mut base = scope.clone();
    let mut segments = path.iter().peekable();
    match segments.peek().map(|segment| segment.as_str()) {
        Some("crate") => {
            base.clear();
            segments.next();
        }
        Some("self") => {
            segments.next();
        }
        _ => {}
    }
    while segments.peek().is_some_and(|segment| *segment == "super") {
        base.pop();
        segments.next();
    }
    base.extend(segments.filter(|segment| *segment != "self").cloned());
    base
}

/// The longest prefix of `path` that is a module with its own file.
fn deepest_known(path: &ModulePath, known: &BTreeSet<ModulePath>) -> ModulePath {
    (0..=path.len())
        .rev()
        .map(|length| path[..length].to_vec())
        .find(|prefix| known.contains(prefix))
        .unwrap_or_default()
}

/// The two sibling modules (children of the same folder) that a reference from `from` to `to`
/// runs between; none when one contains the other.
fn sibling_pair(from: &ModulePath, to: &ModulePath) -> Option<(ModulePath, ModulePath)> {
    let common = from.iter().zip(to).take_while(|(left, right)| left == right).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((from[..=common].to_vec(), to[..=common].to_vec()))
}

/// Each circle of the graph once, as the modules along it with the first repeated at the end.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for start in graph.keys() {
        // Depth-first search for a way back to `start` through modules ordered after it, so
        // each circle is found from its smallest member only.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let members: BTreeSet<String> = path.iter().cloned().collect();
                    if reported.insert(members) {
                        let mut circle = path.clone();
                        circle.push(start.clone());
                        found.push(circle);
                    }
                } else if next > start && seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found
}
