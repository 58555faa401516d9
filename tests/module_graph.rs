//! The modules of `src/` never import each other in a loop: a request flows down the module tree, and the
//! folders are wings that depend on the core, never the other way round.
//!
//! # The graph
//!
//! - A node is a file of `src/` (`src/lib.rs`, `src/auth/mod.rs`, `src/upstream/exchange/cache.rs`, …).
//! - An edge `A → B` is a path in the *code* of `A` (comments, doc comments and string literals do not count)
//!   that names an item of `B`: a `use` item (`use crate::…`, `use super::…`, `use self::…`, or a `use` whose
//!   first segment is a child module, as `pub use layer::McpAuthLayer;` in a `mod.rs`), or a path written inline
//!   (`crate::validators::JwtClaims`, `super::json_error(..)`).
//! - A path is resolved to the file that *defines* the item: it descends the module tree as far as the path
//!   names modules, then follows the `use` items of the module it reached (re-exports included), so
//!   `crate::McpAuthLayer` is an edge to the file defining `McpAuthLayer`, not to `src/lib.rs`. A path that
//!   ends on a module (`use crate::metrics::{self, …}`, `use super::*`) is an edge to that module's file.
//! - `mod x;` declarations are not edges (a parent owns its children), and unit-test modules
//!   (`#[cfg(test)] mod … { … }`) are left out: tests may reach anywhere.
//!
//! The test fails when the graph has a cycle (a strongly connected component of more than one file), naming
//! the files and the edges that close it. On the layout before `src/auth/`, it reported
//! `layer.rs → service.rs → future.rs → layer.rs` (`Config` beside the builder, `settle` beside the future).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// A module path from the crate root, e.g. `["upstream", "exchange"]`.
type ModPath = Vec<String>;

#[test]
fn no_import_loop_among_the_modules_of_src() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::read(&src);
    let cycles = graph.cycles();
    assert!(
        cycles.is_empty(),
        "the modules of src/ import each other in a loop:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_graph_sees_a_loop() {
    // The rule itself, on a made-up tree: `a` uses `b`, which uses `a` back through a re-export at the root.
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("b")).unwrap();
    fs::write(dir.join("lib.rs"), "mod a;\nmod b;\npub use a::A;\n").unwrap();
    fs::write(dir.join("a.rs"), "use crate::b::B;\npub struct A(B);\n").unwrap();
    fs::write(
        dir.join("b/mod.rs"),
        "mod c;\npub use c::B;\n// crate::A in a comment is no edge\n",
    )
    .unwrap();
    fs::write(
        dir.join("b/c.rs"),
        "pub struct B;\nfn f() -> Option<crate::A> { None }\n#[cfg(test)]\nmod tests { use crate::a::A; }\n",
    )
    .unwrap();
    let cycles = Graph::read(&dir).cycles();
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].contains("a.rs") && cycles[0].contains("b/c.rs"),
        "{}",
        cycles[0]
    );
    assert!(!cycles[0].contains("b/mod.rs"), "{}", cycles[0]);
}

/// One file of `src/`: its module path, and its code with comments, strings and test modules removed.
struct Module {
    file: String,
    code: String,
}

struct Graph {
    modules: BTreeMap<ModPath, Module>,
    /// `(from, to)` → the paths that make the edge.
    edges: BTreeMap<(ModPath, ModPath), BTreeSet<String>>,
}

impl Graph {
    fn read(src: &Path) -> Self {
        let mut modules = BTreeMap::new();
        for file in rust_files(src) {
            let relative = file.strip_prefix(src).unwrap();
            let mut path: ModPath = relative
                .iter()
                .map(|c| c.to_str().unwrap().trim_end_matches(".rs").to_owned())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            if path.len() == 1 && path[0] == "bin" {
                continue;
            }
            let text = fs::read_to_string(&file).unwrap();
            let code = strip_test_modules(&strip_comments_and_strings(&text));
            let file = relative.to_string_lossy().replace('\\', "/");
            modules.insert(path, Module { file, code });
        }
        let mut graph = Self {
            modules,
            edges: BTreeMap::new(),
        };
        let mut edges = BTreeMap::new();
        for (from, module) in &graph.modules {
            for written in graph.references(from, &module.code) {
                let Some(absolute) = graph.absolute(from, &written) else {
                    continue;
                };
                let to = graph.resolve(&absolute, 0);
                if &to != from {
                    edges
                        .entry((from.clone(), to))
                        .or_insert_with(BTreeSet::new)
                        .insert(written.join("::"));
                }
            }
        }
        graph.edges = edges;
        graph
    }

    /// Every path `code` writes: the leaves of its `use` trees, and `crate::`/`super::`/`self::` paths inline.
    fn references(&self, from: &ModPath, code: &str) -> Vec<Vec<String>> {
        let mut paths = Vec::new();
        let tokens = tokenize(code);
        // Inline modules (`mod names { … }`) are part of their file: `self::` in them is the file, and their
        // first `super::` steps out to the file.
        let mut depth = 0usize;
        let mut inline: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            match tokens[i].as_str() {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if inline.last() == Some(&depth) {
                        inline.pop();
                    }
                }
                "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                    inline.push(depth);
                }
                _ => {}
            }
            let start = paths.len();
            if tokens[i] == "use" {
                let end = tokens[i..]
                    .iter()
                    .position(|t| t == ";")
                    .map_or(tokens.len(), |p| i + p);
                use_tree(&tokens[i + 1..end], &[], &mut paths);
                i = end + 1;
            } else if matches!(tokens[i].as_str(), "crate" | "super" | "self")
                && tokens.get(i + 1).is_some_and(|t| t == "::")
                && (i == 0 || tokens[i - 1] != "::")
            {
                let mut path = vec![tokens[i].clone()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|t| t == "::")
                    && tokens.get(j + 1).is_some_and(|t| is_ident(t))
                {
                    path.push(tokens[j + 1].clone());
                    j += 2;
                }
                paths.push(path);
                i = j;
            } else {
                i += 1;
            }
            for path in &mut paths[start..] {
                let supers = path.iter().take_while(|s| *s == "super").count();
                if inline.is_empty() || path[0] == "crate" {
                    continue;
                }
                if path[0] == "self" || supers <= inline.len() {
                    path.drain(..supers.max(1));
                    path.insert(0, "self".to_owned());
                } else {
                    path.drain(..inline.len());
                }
            }
        }
        // A `use` of a child module's item without `self::` (`pub use layer::X;`) is relative to this module.
        paths
            .into_iter()
            .filter_map(|path| {
                let first = path.first()?.as_str();
                if matches!(first, "crate" | "super" | "self") {
                    return Some(path);
                }
                let mut child = from.clone();
                child.push(first.to_owned());
                self.modules
                    .contains_key(&child)
                    .then(|| std::iter::once("self".to_owned()).chain(path).collect())
            })
            .collect()
    }

    /// `path` (starting with `crate`, `super` or `self`) from the crate root.
    fn absolute(&self, from: &ModPath, path: &[String]) -> Option<Vec<String>> {
        let mut base: ModPath = match path.first()?.as_str() {
            "crate" => Vec::new(),
            _ => from.clone(),
        };
        let mut rest = &path[1..];
        if path[0] == "super" {
            base.pop()?;
        }
        while rest.first().is_some_and(|s| s == "super") {
            base.pop()?;
            rest = &rest[1..];
        }
        base.extend(rest.iter().filter(|s| *s != "self").cloned());
        Some(base)
    }

    /// The module whose file defines what `path` (absolute) names.
    fn resolve(&self, path: &[String], depth: usize) -> ModPath {
        let mut module: ModPath = Vec::new();
        let mut rest = path;
        while let Some(segment) = rest.first() {
            let mut child = module.clone();
            child.push(segment.clone());
            if !self.modules.contains_key(&child) {
                break;
            }
            module = child;
            rest = &rest[1..];
        }
        let Some(name) = rest.first() else {
            return module;
        };
        if depth > 16 || name == "*" {
            return module;
        }
        // A name the module brings in with `use` is defined where that `use` points.
        let code = &self.modules[&module].code;
        for written in self.references(&module, code) {
            let bound = written.last().map(String::as_str);
            if bound == Some(name.as_str()) && is_use_binding(code, name) {
                if let Some(absolute) = self.absolute(&module, &written) {
                    if absolute.as_slice() != path {
                        return self.resolve(&absolute, depth + 1);
                    }
                }
            }
        }
        module
    }

    /// The loops, one line each, with the edges that make them.
    fn cycles(&self) -> Vec<String> {
        let nodes: Vec<&ModPath> = self.modules.keys().collect();
        let index: BTreeMap<&ModPath, usize> =
            nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        let mut next = vec![Vec::new(); nodes.len()];
        for (from, to) in self.edges.keys() {
            next[index[from]].push(index[to]);
        }
        strongly_connected(&next)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let members: BTreeSet<usize> = component.iter().copied().collect();
                let edges: Vec<String> = self
                    .edges
                    .iter()
                    .filter(|((from, to), _)| {
                        members.contains(&index[from]) && members.contains(&index[to])
                    })
                    .map(|((from, to), paths)| {
                        format!(
                            "{} → {} ({})",
                            self.modules[from].file,
                            self.modules[to].file,
                            paths.iter().cloned().collect::<Vec<_>>().join(", ")
                        )
                    })
                    .collect();
                format!("  loop: {}", edges.join("; "))
            })
            .collect()
    }
}

/// Whether `name` is bound by a `use` item of `code` (not merely named by an inline path).
fn is_use_binding(code: &str, name: &str) -> bool {
    let tokens = tokenize(code);
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            let end = tokens[i..]
                .iter()
                .position(|t| t == ";")
                .map_or(tokens.len(), |p| i + p);
            if tokens[i + 1..end].iter().any(|t| t == name) {
                return true;
            }
            i = end;
        }
        i += 1;
    }
    false
}

/// The leaves of a `use` tree such as `crate::{a::B, c::{self, D}}`; `x as y` keeps `x`.
fn use_tree(tokens: &[String], prefix: &[String], out: &mut Vec<Vec<String>>) {
    // Split the top level on commas.
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    for part in parts {
        let part: Vec<&String> = part.iter().filter(|t| !t.is_empty()).collect();
        let mut path = prefix.to_vec();
        let mut i = 0;
        let mut nested = false;
        while i < part.len() {
            match part[i].as_str() {
                "::" => {}
                "as" => break,
                "{" => {
                    let inner: Vec<String> = part[i + 1..part.len() - 1]
                        .iter()
                        .map(|s| (*s).clone())
                        .collect();
                    use_tree(&inner, &path, out);
                    nested = true;
                    break;
                }
                segment => path.push(segment.to_owned()),
            }
            i += 1;
        }
        if !nested && path.len() > prefix.len() {
            out.push(path);
        }
    }
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, `*` and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            tokens.push(ident.trim_start_matches("r#").to_owned());
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_owned());
            i += 2;
            continue;
        }
        if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
        i += 1;
    }
    tokens
}

/// `text` with comments (doc comments included) removed and string and char literals emptied.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            continue;
        }
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        // Raw strings: r"…", r#"…"#, br#"…"#.
        if (c == 'r' || (c == 'b' && next == Some('r'))) && !ident_before {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
                continue;
            }
        }
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
            continue;
        }
        if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
                continue;
            }
            if chars.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `code` without its unit-test modules: `mod … { … }` under a `#[cfg(…)]` that names `test`.
fn strip_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(") {
        let attribute_end = rest[at..].find(']').map_or(rest.len(), |e| at + e + 1);
        let attribute = &rest[at..attribute_end];
        let after = &rest[attribute_end..];
        let trimmed = after.trim_start();
        let names_test = tokenize(attribute).iter().any(|t| t == "test");
        let is_module = trimmed.starts_with("mod ") || trimmed.starts_with("pub(crate) mod ");
        let body = trimmed
            .find(['{', ';'])
            .filter(|&p| trimmed[p..].starts_with('{'));
        match (names_test && is_module, body) {
            (true, Some(open)) => {
                out.push_str(&rest[..at]);
                let block = &trimmed[open..];
                let mut depth = 0;
                let mut end = block.len();
                for (i, c) in block.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &block[end..];
            }
            _ => {
                out.push_str(&rest[..attribute_end]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Tarjan's strongly connected components.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        components: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.next[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let n = next.len();
    let mut s = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        components: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.components
}
