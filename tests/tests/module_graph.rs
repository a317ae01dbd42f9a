//! Import circles between modules: fails when, in a library crate of the workspace (`shared`,
//! `extractor`, `temporal`), sibling modules import one another in a circle, directly
//! (`config <-> sweep`) or through other siblings (`evaluate -> submit -> smooth -> evaluate`).
//! A module on a circle cannot be read, tested or moved without all the others.
//!
//! What it checks, reading the source with a small hand-written lexer (plain std):
//! - The module tree comes from the files: `src/lib.rs` is the crate root, `src/a.rs` or
//!   `src/a/mod.rs` is module `a`, `src/a/b.rs` is `a::b`. `src/main.rs` and `src/bin/` are not
//!   part of the library and are skipped.
//! - A reference is every path starting with `crate::`, `super::` or `self::` in code: in `use`
//!   statements, grouped ones included (`use crate::{data::{Split, SplitData}, model::Arch};`),
//!   and inline (`crate::sweep::finished_runs(p)`). `super::` and `self::` are resolved from the
//!   module of the file (`super::c` in `a/b.rs` is `a::c`, in `a/mod.rs` it is the crate-level
//!   `c`); the path then names the longest prefix of it that is a module.
//! - Comments (doc comments and intra-doc links included), string, char and byte literals do not
//!   count, nor does the item that follows a `#[cfg(test)]` attribute (a test module, braced or
//!   in its own file through `#[cfg(test)] mod tests;`), nor a file that starts with
//!   `#![cfg(test)]`. Code after the test item still counts.
//! - A reference from module P to module Q, neither inside the other, is an edge between the two
//!   children of their lowest common ancestor that hold P and Q: `model::encoder` naming
//!   `model::gru` is `encoder -> gru` among the children of `model`; `train` naming `data::join`
//!   is `train -> data` at the crate root. A parent naming its child (a `mod.rs` re-exporting
//!   it) or a child naming an item of its parent is not an edge.
//! - Every circle of every such sibling graph is listed, each edge with the file(s) and line(s)
//!   that create it.
//!
//! What it does not see: paths that macros generate (a `macro_rules!` body is read as the
//! tokens written there, nothing is expanded); the crate used by its own name (`use temporal::x`
//! inside `temporal`); names that reach a module without a `crate`/`super`/`self` path (through
//! a glob import, say); code under a `cfg` other than exactly `cfg(test)` (it counts as code);
//! `#[path = ...]` attributes; inline `mod x { ... }` blocks as modules of their own (their paths
//! count for the module of the file, with `super::`/`self::` resolved from the inline module);
//! and dependencies between crates (cargo already forbids circles there).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// The library crates whose modules are checked; each is a folder of the workspace root.
const CRATES: [&str; 3] = ["shared", "extractor", "temporal"];

/// At most this many circles are listed per sibling graph (the list is there to be read).
const MAX_CIRCLES_PER_GRAPH: usize = 100;

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let root = tests::workspace_root();
    let mut circles = Vec::new();
    for name in CRATES {
        let krate = read_crate(&root, name);
        assert!(
            krate.files.contains_key("lib.rs"),
            "{name}/src/lib.rs not found under {}",
            root.display()
        );
        circles.extend(find_circles(&krate));
    }
    assert!(circles.is_empty(), "{}", report(&circles));
}

// ---------------------------------------------------------------------------------------------
// The checker.

/// A crate's sources: path relative to `<name>/src` (with `/`) -> source text.
struct Crate {
    name: String,
    files: BTreeMap<String, String>,
}

/// Read every `.rs` file under `<root>/<name>/src`.
fn read_crate(root: &Path, name: &str) -> Crate {
    fn walk(dir: &Path, rel: &str, files: &mut BTreeMap<String, String>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                file_name
            } else {
                format!("{rel}/{file_name}")
            };
            if path.is_dir() {
                walk(&path, &rel, files);
            } else if rel.ends_with(".rs") {
                // A file may vanish or be half-written while someone edits the tree: a file
                // that cannot be read is left out rather than failing the check.
                if let Ok(text) = std::fs::read_to_string(&path) {
                    files.insert(rel, text);
                }
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(&root.join(name).join("src"), "", &mut files);
    Crate {
        name: name.to_string(),
        files,
    }
}

/// Where a reference is written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Location {
    file: String,
    line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Sibling graphs of a crate: parent module -> (from child, to child) -> where it is written.
type Graphs = BTreeMap<Vec<String>, BTreeMap<(String, String), BTreeSet<Location>>>;

/// The module a file of `src/` defines; `None` for files that are not part of the library.
fn module_of(rel: &str) -> Option<Vec<String>> {
    let stem = rel.strip_suffix(".rs")?;
    if stem == "main" || stem.starts_with("bin/") {
        return None;
    }
    if stem == "lib" {
        return Some(Vec::new());
    }
    let mut parts: Vec<String> = stem.split('/').map(String::from).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// The sibling graphs of a crate, from every reference written in its files.
fn sibling_graphs(krate: &Crate) -> Graphs {
    let mut scans = Vec::new();
    let mut test_only: Vec<Vec<String>> = Vec::new();
    for (rel, source) in &krate.files {
        let Some(module) = module_of(rel) else {
            continue;
        };
        let found = scan(source, &module);
        if found.whole_file_is_test {
            test_only.push(module.clone());
        }
        for name in &found.test_modules {
            let mut child = module.clone();
            child.push(name.clone());
            test_only.push(child);
        }
        scans.push((rel, module, found));
    }
    let is_test_only = |m: &[String]| test_only.iter().any(|t| m.starts_with(t));
    let mut known: BTreeSet<Vec<String>> = scans
        .iter()
        .map(|(_, module, _)| module.clone())
        .filter(|m| !is_test_only(m))
        .collect();
    known.insert(Vec::new());

    let mut graphs = Graphs::new();
    for (rel, from, found) in &scans {
        if is_test_only(from) {
            continue;
        }
        for (path, line) in &found.paths {
            let to = (0..=path.len())
                .rev()
                .map(|k| &path[..k])
                .find(|prefix| known.contains(*prefix))
                .unwrap_or(&[]);
            if from.starts_with(to) || to.starts_with(from) {
                continue; // the same module, or a parent and its descendant
            }
            let k = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            graphs
                .entry(from[..k].to_vec())
                .or_default()
                .entry((from[k].clone(), to[k].clone()))
                .or_default()
                .insert(Location {
                    file: format!("{}/src/{rel}", krate.name),
                    line: *line,
                });
        }
    }
    graphs
}

/// A circle in one sibling graph: `nodes[i] -> nodes[i + 1]`, the last back to the first.
struct Circle {
    /// `temporal` for the crate root's children, `temporal::model` for those of `model`.
    graph: String,
    nodes: Vec<String>,
    /// `edges[i]`: where `nodes[i] -> nodes[(i + 1) % n]` is written.
    edges: Vec<Vec<Location>>,
}

impl fmt::Display for Circle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.graph, self.nodes[0])?;
        for (i, locations) in self.edges.iter().enumerate() {
            let next = &self.nodes[(i + 1) % self.nodes.len()];
            let shown: Vec<String> = locations.iter().take(3).map(|l| l.to_string()).collect();
            write!(f, " -> {next} ({}", shown.join(", "))?;
            if locations.len() > 3 {
                write!(f, ", +{} more", locations.len() - 3)?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// Every elementary circle of every sibling graph of the crate, each starting at its
/// alphabetically first module.
fn find_circles(krate: &Crate) -> Vec<Circle> {
    let mut circles = Vec::new();
    for (parent, edges) in sibling_graphs(krate) {
        let mut graph = krate.name.clone();
        for segment in &parent {
            graph.push_str("::");
            graph.push_str(segment);
        }
        for nodes in circles_in(&edges) {
            let edges = (0..nodes.len())
                .map(|i| {
                    let key = (nodes[i].clone(), nodes[(i + 1) % nodes.len()].clone());
                    edges[&key].iter().cloned().collect()
                })
                .collect();
            circles.push(Circle {
                graph: graph.clone(),
                nodes,
                edges,
            });
        }
    }
    circles
}

/// The elementary circles of a directed graph given by its edges. Each circle is found once,
/// from its smallest node, walking only through larger nodes of the same strongly connected
/// component.
fn circles_in<V>(edges: &BTreeMap<(String, String), V>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
        next.entry(to).or_default();
    }
    let reach: BTreeMap<&str, BTreeSet<&str>> = next
        .keys()
        .map(|&start| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![start];
            while let Some(node) = todo.pop() {
                for &n in &next[node] {
                    if seen.insert(n) {
                        todo.push(n);
                    }
                }
            }
            (start, seen)
        })
        .collect();

    struct Walk<'a> {
        next: &'a BTreeMap<&'a str, Vec<&'a str>>,
        reach: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        start: &'a str,
        path: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            for &n in &self.next[node] {
                if self.found.len() >= MAX_CIRCLES_PER_GRAPH {
                    return;
                }
                if n == self.start {
                    self.found
                        .push(self.path.iter().map(|s| s.to_string()).collect());
                } else if n > self.start
                    && !self.path.contains(&n)
                    && self.reach[n].contains(self.start)
                {
                    self.path.push(n);
                    self.visit(n);
                    self.path.pop();
                }
            }
        }
    }

    let mut walk = Walk {
        next: &next,
        reach: &reach,
        start: "",
        path: Vec::new(),
        found: Vec::new(),
    };
    for &start in next.keys() {
        walk.start = start;
        walk.path = vec![start];
        walk.visit(start);
    }
    walk.found
}

/// The failure message: every circle, and what to do about it.
fn report(circles: &[Circle]) -> String {
    let mut out = format!(
        "{} import circle(s) between modules of the same crate:\n",
        circles.len()
    );
    for circle in circles {
        out.push_str(&format!("  {circle}\n"));
    }
    out.push_str(
        "Each arrow is a `crate::`/`super::`/`self::` path, written at the file and line shown, \
         by which the first module uses the second (or something inside it).\n\
         To break a circle, move the piece both sides need (a type, a function, a constant) into \
         a module both can use: a new sibling module that depends on neither, or a lower-level \
         existing one; import it from there on both sides, so that one arrow of the circle \
         disappears. Passing the piece in as a parameter also works.\n",
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Reading one file.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// `::`
    PathSep,
    /// A number, char, string or byte literal (its content is dropped).
    Literal,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// The code tokens of a Rust source: comments are dropped, literals become `Tok::Literal`
/// and lifetimes disappear.
fn lex(source: &str) -> Vec<Token> {
    let c: Vec<char> = source.chars().collect();
    let at = |j: usize| c.get(j).copied().unwrap_or('\0');
    let is_ident_start = |ch: char| ch.is_alphabetic() || ch == '_';
    let is_ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    // `r"..."`, `r#"..."#`: the number of `#` when a raw string starts at `j` (at the `r`).
    let raw_string_at = |j: usize| {
        if at(j) != 'r' {
            return None;
        }
        let hashes = (j + 1..c.len()).take_while(|&k| c[k] == '#').count();
        (at(j + 1 + hashes) == '"').then_some(hashes)
    };
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let start_line = line;
        let mut push = |tok: Tok| {
            tokens.push(Token {
                tok,
                line: start_line,
            })
        };
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i, &mut line);
            push(Tok::Literal);
        } else if let Some(hashes) = raw_string_at(i) {
            i = skip_raw_string(&c, i + 1 + hashes, hashes, &mut line);
            push(Tok::Literal);
        } else if let Some(hashes) = raw_string_at(i + 1).filter(|_| ch == 'b' || ch == 'c') {
            i = skip_raw_string(&c, i + 2 + hashes, hashes, &mut line);
            push(Tok::Literal);
        } else if (ch == 'b' || ch == 'c') && at(i + 1) == '"' {
            i = skip_string(&c, i + 1, &mut line);
            push(Tok::Literal);
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            let q = if ch == 'b' { i + 1 } else { i };
            if at(q + 1) == '\\' {
                // An escaped char: '\n', '\'', '\u{1F600}'.
                let mut j = q + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                push(Tok::Literal);
            } else if at(q + 2) == '\'' {
                i = q + 3; // 'x', '{', '"'
                push(Tok::Literal);
            } else {
                // A lifetime or a loop label: 'a, 'static.
                i = q + 1;
                while is_ident_char(at(i)) {
                    i += 1;
                }
            }
        } else if ch == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            // A raw identifier, r#type.
            let start = i + 2;
            i = start;
            while is_ident_char(at(i)) {
                i += 1;
            }
            push(Tok::Ident(c[start..i].iter().collect()));
        } else if is_ident_start(ch) {
            let start = i;
            while is_ident_char(at(i)) {
                i += 1;
            }
            push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch.is_ascii_digit() {
            while is_ident_char(at(i)) {
                i += 1;
            }
            push(Tok::Literal);
        } else if ch == ':' && at(i + 1) == ':' {
            i += 2;
            push(Tok::PathSep);
        } else {
            i += 1;
            push(Tok::Punct(ch));
        }
    }
    tokens
}

/// Skip a `"..."` string whose opening quote is at `i`; returns the index after it.
fn skip_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    i += 1;
    while i < c.len() {
        match c[i] {
            '\\' => {
                if c.get(i + 1) == Some(&'\n') {
                    *line += 1;
                }
                i += 2;
            }
            '"' => return i + 1,
            ch => {
                if ch == '\n' {
                    *line += 1;
                }
                i += 1;
            }
        }
    }
    i
}

/// Skip a raw string whose opening quote is at `i`, closed by `"` and `hashes` times `#`.
fn skip_raw_string(c: &[char], mut i: usize, hashes: usize, line: &mut usize) -> usize {
    i += 1;
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        if c[i] == '\n' {
            *line += 1;
        }
        i += 1;
    }
    i
}

fn ident(t: &[Token], i: usize) -> Option<&str> {
    match t.get(i).map(|x| &x.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn punct(t: &[Token], i: usize, ch: char) -> bool {
    matches!(t.get(i).map(|x| &x.tok), Some(Tok::Punct(c)) if *c == ch)
}

fn path_sep(t: &[Token], i: usize) -> bool {
    matches!(t.get(i).map(|x| &x.tok), Some(Tok::PathSep))
}

/// `[cfg(test)]` starting at `i`.
fn cfg_test_at(t: &[Token], i: usize) -> bool {
    punct(t, i, '[')
        && ident(t, i + 1) == Some("cfg")
        && punct(t, i + 2, '(')
        && ident(t, i + 3) == Some("test")
        && punct(t, i + 4, ')')
        && punct(t, i + 5, ']')
}

/// From an opening bracket at `i`, the index after its matching closing one.
fn skip_balanced(t: &[Token], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(token) = t.get(i) {
        match token.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Skip the item (or statement, field, variant) that starts at `i`, after an attribute: up to
/// its `;`, its braced body, or the `,` that ends it. Returns the index after it, and the name
/// of the module when the item is `mod name;` (a module in a file of its own).
fn skip_item(t: &[Token], mut i: usize) -> (usize, Option<String>) {
    while punct(t, i, '#') && punct(t, i + 1, '[') {
        i = skip_balanced(t, i + 1);
    }
    let mut k = i;
    if ident(t, k) == Some("pub") {
        k += 1;
        if punct(t, k, '(') {
            k = skip_balanced(t, k);
        }
    }
    let file_module = match (ident(t, k), ident(t, k + 1)) {
        (Some("mod"), Some(name)) if punct(t, k + 2, ';') => Some(name.to_string()),
        _ => None,
    };
    let (mut depth, mut angle) = (0usize, 0usize);
    while let Some(token) = t.get(i) {
        match token.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(close @ (')' | ']' | '}')) => {
                if depth == 0 {
                    return (i, file_module); // the end of the enclosing block
                }
                depth -= 1;
                if depth == 0 && close == '}' {
                    i += 1;
                    if punct(t, i, ';') {
                        i += 1;
                    }
                    return (i, file_module);
                }
            }
            Tok::Punct(';') if depth == 0 => return (i + 1, file_module),
            Tok::Punct(',') if depth == 0 && angle == 0 => return (i + 1, file_module),
            Tok::Punct('<') if depth == 0 => angle += 1,
            Tok::Punct('>')
                if depth == 0 && !(i > 0 && (punct(t, i - 1, '-') || punct(t, i - 1, '='))) =>
            {
                angle = angle.saturating_sub(1)
            }
            _ => {}
        }
        i += 1;
    }
    (i, file_module)
}

/// What one file refers to.
#[derive(Default)]
struct FileScan {
    /// Absolute paths (without `crate`) that the code names, with their lines.
    paths: Vec<(Vec<String>, usize)>,
    /// Modules declared `#[cfg(test)] mod name;`: test code in files of their own.
    test_modules: Vec<String>,
    /// The file starts with `#![cfg(test)]`.
    whole_file_is_test: bool,
}

/// Every `crate::`/`super::`/`self::` path in the code of a file that defines `module`.
fn scan(source: &str, module: &[String]) -> FileScan {
    let t = lex(source);
    let mut found = FileScan::default();
    let mut depth = 0usize;
    // Inline `mod name { ... }` blocks we are in, with the brace depth of their body.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_inline: Option<String> = None;
    let mut i = 0;
    while i < t.len() {
        if punct(&t, i, '#') && punct(&t, i + 1, '!') && cfg_test_at(&t, i + 2) && depth == 0 {
            found.whole_file_is_test = true;
            found.paths.clear();
            return found;
        }
        if punct(&t, i, '#') && cfg_test_at(&t, i + 1) {
            let (end, file_module) = skip_item(&t, i + 7);
            if let (Some(name), true) = (file_module, inline.is_empty()) {
                found.test_modules.push(name);
            }
            i = end;
            continue;
        }
        match &t[i].tok {
            Tok::Ident(k) if k == "mod" => {
                if let (Some(name), true) = (ident(&t, i + 1), punct(&t, i + 2, '{')) {
                    pending_inline = Some(name.to_string());
                }
            }
            Tok::Punct('{') => {
                depth += 1;
                if let Some(name) = pending_inline.take() {
                    inline.push((name, depth));
                }
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(k)
                if matches!(k.as_str(), "crate" | "super" | "self")
                    && path_sep(&t, i + 1)
                    && !(i > 0 && path_sep(&t, i - 1))
                    // `pub(in crate::a)` restricts visibility, it names nothing.
                    && !(i > 1 && ident(&t, i - 1) == Some("in") && punct(&t, i - 2, '(')) =>
            {
                let mut here = module.to_vec();
                here.extend(inline.iter().map(|(name, _)| name.clone()));
                i = anchored_path(&t, i, &here, &mut found.paths);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Read the path that starts with `crate`, `super` or `self` at `i` in a file whose code is in
/// module `here`; push the absolute paths it names; return the index after it.
fn anchored_path(
    t: &[Token],
    i: usize,
    here: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut base = match ident(t, i) {
        Some("crate") => Vec::new(),
        Some("self") => here.to_vec(),
        _ if here.is_empty() => return i + 2, // `super` above the crate root
        _ => here[..here.len() - 1].to_vec(),
    };
    let mut j = i + 2;
    while ident(t, j) == Some("super") && path_sep(t, j + 1) {
        if base.pop().is_none() {
            return j + 2;
        }
        j += 2;
    }
    use_tree(t, j, base, t[i].line, out)
}

/// Read a path (or `use` tree) after `prefix::`, at `i`: `a::b::C`, `{a, b::{c, d}}`, `*`,
/// `self`, `x as y`. Push each full path with the line of its last segment.
fn use_tree(
    t: &[Token],
    mut i: usize,
    mut path: Vec<String>,
    mut line: usize,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let skip_rename = |i: usize| {
        if ident(t, i) == Some("as") {
            i + 2
        } else {
            i
        }
    };
    loop {
        match t.get(i).map(|x| &x.tok) {
            Some(Tok::Ident(s)) if s == "self" => {
                out.push((path, t[i].line));
                return skip_rename(i + 1);
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                line = t[i].line;
                i += 1;
                if path_sep(t, i) {
                    i += 1;
                    continue;
                }
                out.push((path, line));
                return skip_rename(i);
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match t.get(i).map(|x| &x.tok) {
                        None => return i,
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        Some(_) => {
                            let end = use_tree(t, i, path.clone(), line, out);
                            i = end.max(i + 1);
                        }
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push((path, t[i].line));
                return i + 1;
            }
            // `crate::a::f::<T>()` and the like: the path so far.
            _ => {
                out.push((path, line));
                return i;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests of the checker, on crates held in memory.

/// A crate named `temporal` made of `(path under src/, source)` pairs.
fn fake(files: &[(&str, &str)]) -> Crate {
    Crate {
        name: "temporal".to_string(),
        files: files
            .iter()
            .map(|(path, source)| (path.to_string(), source.to_string()))
            .collect(),
    }
}

/// The edges of a fake crate: `from -> to` at the root, `parent: from -> to` below it.
fn edges(files: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (parent, graph) in sibling_graphs(&fake(files)) {
        for (from, to) in graph.keys() {
            if parent.is_empty() {
                out.push(format!("{from} -> {to}"));
            } else {
                out.push(format!("{}: {from} -> {to}", parent.join("::")));
            }
        }
    }
    out
}

/// The circles of a fake crate, as the failure message shows them.
fn circles(files: &[(&str, &str)]) -> Vec<String> {
    find_circles(&fake(files))
        .iter()
        .map(|c| c.to_string())
        .collect()
}

/// The absolute paths the code of `source` names when it is module `module` (`a::b`).
fn paths(source: &str, module: &str) -> Vec<String> {
    let module: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    scan(source, &module)
        .paths
        .into_iter()
        .map(|(path, _)| {
            ["crate".to_string()]
                .into_iter()
                .chain(path)
                .collect::<Vec<_>>()
                .join("::")
        })
        .collect()
}

const ROOT: &str = "pub mod config;\npub mod data;\npub mod evaluate;\npub mod model;\n\
                    pub mod smooth;\npub mod submit;\npub mod sweep;\npub mod train;\n";

#[test]
fn a_circle_through_three_modules_is_reported_with_its_files_and_lines() {
    let files = [
        ("lib.rs", ROOT),
        ("evaluate.rs", "//! Scores.\n\nuse crate::submit::write;\n"),
        ("submit.rs", "use std::fs;\nuse crate::smooth::Smoother;\n"),
        ("smooth.rs", "fn f() {\n    crate::evaluate::score();\n}\n"),
    ];
    let found = circles(&files);
    assert_eq!(
        found,
        ["temporal: evaluate -> submit (temporal/src/evaluate.rs:3) \
          -> smooth (temporal/src/submit.rs:2) -> evaluate (temporal/src/smooth.rs:2)"]
    );
    let message = report(&find_circles(&fake(&files)));
    assert!(message.starts_with("1 import circle(s)"), "{message}");
    assert!(message.contains(&found[0]), "{message}");
    assert!(
        message.contains("move the piece both sides need"),
        "{message}"
    );
}

#[test]
fn two_modules_that_name_each_other_are_a_circle_and_every_place_is_listed() {
    let files = [
        ("lib.rs", ROOT),
        (
            "config.rs",
            "use crate::data::Mode;\n\npub struct C {\n    \
             pub fold: Option<crate::sweep::Fold>,\n}\n\
             fn g() -> crate::sweep::Fold { panic!() }\n",
        ),
        ("sweep.rs", "use crate::config::Config;\n"),
    ];
    assert_eq!(
        circles(&files),
        [
            "temporal: config -> sweep (temporal/src/config.rs:4, temporal/src/config.rs:6) \
          -> config (temporal/src/sweep.rs:1)"
        ]
    );
}

#[test]
fn every_circle_of_a_sibling_graph_is_listed_once() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "use crate::b::B;\n"),
        ("b.rs", "use crate::a::A;\nuse crate::c::C;\n"),
        ("c.rs", "use crate::a::A;\nuse crate::b::B;\n"),
    ];
    assert_eq!(
        circles(&files),
        [
            "temporal: a -> b (temporal/src/a.rs:1) -> a (temporal/src/b.rs:1)",
            "temporal: a -> b (temporal/src/a.rs:1) -> c (temporal/src/b.rs:2) \
             -> a (temporal/src/c.rs:1)",
            "temporal: b -> c (temporal/src/b.rs:2) -> b (temporal/src/c.rs:2)",
        ]
    );
}

#[test]
fn a_circle_among_the_children_of_a_module_is_reported_under_that_module() {
    let files = [
        ("lib.rs", "pub mod model;\n"),
        (
            "model/mod.rs",
            "mod encoder;\nmod gru;\npub use encoder::Encoder;\n",
        ),
        ("model/encoder.rs", "use super::gru::Gru;\n"),
        ("model/gru.rs", "\nuse crate::model::encoder::Encoder;\n"),
    ];
    assert_eq!(
        circles(&files),
        [
            "temporal::model: encoder -> gru (temporal/src/model/encoder.rs:1) \
          -> encoder (temporal/src/model/gru.rs:2)"
        ]
    );
}

#[test]
fn a_tree_without_circles_is_clean() {
    let files = [
        ("lib.rs", ROOT),
        (
            "train.rs",
            "use crate::{data::Split, model::Arch, config::Config};\n",
        ),
        (
            "model/mod.rs",
            "pub mod encoder;\npub mod gru;\nuse crate::data::Split;\n",
        ),
        (
            "model/encoder.rs",
            "use super::gru::Gru;\nuse crate::config::Config;\n",
        ),
        ("model/gru.rs", "use crate::data::Split;\n"),
        ("data/mod.rs", "pub mod join;\n"),
        ("config.rs", "use crate::data::join::Mode;\n"),
    ];
    assert_eq!(
        edges(&files),
        [
            "config -> data",
            "model -> config",
            "model -> data",
            "train -> config",
            "train -> data",
            "train -> model",
            "model: encoder -> gru",
        ]
    );
    assert!(circles(&files).is_empty());
}

#[test]
fn a_grouped_use_with_nested_braces_names_every_path_in_it() {
    let source = "use crate::{data::{Split, SplitData}, model::Arch};\n\
                  use super::{a, b::c};\n\
                  use crate::data::{self, join::*, Split as S, labels::{self as l}};\n\
                  use {crate::loss::Loss, std::fs};\n";
    assert_eq!(
        paths(source, "x::y"),
        [
            "crate::data::Split",
            "crate::data::SplitData",
            "crate::model::Arch",
            "crate::x::a",
            "crate::x::b::c",
            "crate::data",
            "crate::data::join",
            "crate::data::Split",
            "crate::data::labels",
            "crate::loss::Loss",
        ]
    );
}

#[test]
fn a_path_written_inline_in_code_is_a_reference() {
    let source = "fn f(p: &Path) -> usize {\n\
                  \x20   let c = crate::model::Config::<u8>::default();\n\
                  \x20   let s = crate::data::Split { n: 1 };\n\
                  \x20   crate::sweep::finished_runs(p).len() + self::helper() + super::g()\n\
                  }\n";
    assert_eq!(
        paths(source, "train::step"),
        [
            "crate::model::Config",
            "crate::data::Split",
            "crate::sweep::finished_runs",
            "crate::train::step::helper",
            "crate::train::g",
        ]
    );
}

#[test]
fn super_in_a_leaf_file_resolves_to_a_sibling_of_its_module() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod d;\n"),
        ("a/mod.rs", "pub mod b;\npub mod c;\n"),
        ("a/b.rs", "use super::c::X;\nuse super::super::d::Y;\n"),
        ("a/c.rs", ""),
        ("d.rs", ""),
    ];
    assert_eq!(edges(&files), ["a -> d", "a: b -> c"]);
}

#[test]
fn super_in_a_mod_rs_resolves_to_a_crate_level_module() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod c;\n"),
        (
            "a/mod.rs",
            "pub mod b;\nuse super::c::X;\nuse self::b::Y;\n",
        ),
        ("a/b.rs", ""),
        ("c.rs", ""),
    ];
    assert_eq!(edges(&files), ["a -> c"]);
}

#[test]
fn a_path_names_the_longest_prefix_of_it_that_is_a_module() {
    let files = [
        ("lib.rs", "pub mod a;\n"),
        ("a/mod.rs", "pub mod b;\npub mod x;\npub fn helper() {}\n"),
        ("a/b.rs", "pub struct Item;\n"),
        (
            "a/x.rs",
            "fn f() {\n    crate::a::helper();\n    crate::a::b::Item::new();\n}\n",
        ),
    ];
    assert_eq!(edges(&files), ["a: x -> b"]);
}

#[test]
fn paths_in_comments_strings_and_chars_do_not_count() {
    let source = r####"//! Module doc naming [`crate::b::X`].
// use crate::b::X;
/// See [`crate::b::Y`] and super::b.
/* crate::b::X /* nested crate::b */ still a comment crate::b */
fn f<'a>(s: &'a str) -> &'a str {
    let _ = "use crate::b::X; \" crate::b";
    let _ = r#"crate::b "quoted" crate::b"#;
    let _ = b"crate::b";
    let _ = br##"crate::b"##;
    let _ = ('"', '\'', '{', b'"', '\u{7b}');
    'outer: loop { break 'outer; }
    crate::c::real(s)
}
"####;
    assert_eq!(paths(source, "a"), ["crate::c::real"]);
}

#[test]
fn a_cfg_test_module_does_not_count_but_the_code_after_it_does() {
    let source = "pub fn before() { crate::c::before(); }\n\
                  #[cfg(test)]\n\
                  mod tests {\n\
                  \x20   use super::*;\n\
                  \x20   use crate::b::{helper, other::{x, y}};\n\
                  \x20   #[test]\n\
                  \x20   fn t() { crate::b::x(); let _ = '}'; }\n\
                  }\n\
                  #[cfg(test)]\n\
                  #[allow(dead_code)]\n\
                  fn helper<A, B>(a: A, b: B) -> Result<(), crate::b::E> { crate::b::z() }\n\
                  #[cfg(test)]\n\
                  use crate::b::{p, q};\n\
                  pub struct S {\n\
                  \x20   #[cfg(test)]\n\
                  \x20   probe: crate::b::Probe,\n\
                  \x20   field: crate::c::Field,\n\
                  }\n\
                  #[cfg(not(test))]\n\
                  pub fn after() { crate::c::after(); }\n";
    assert_eq!(
        paths(source, "a"),
        ["crate::c::before", "crate::c::Field", "crate::c::after"]
    );
}

#[test]
fn a_test_module_in_a_file_of_its_own_does_not_count() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a/mod.rs", "pub fn f() {}\n\n#[cfg(test)]\nmod tests;\n"),
        ("a/tests.rs", "use super::*;\nuse crate::b::X;\n"),
        ("b.rs", "use crate::a::f;\n"),
        ("c.rs", "#![cfg(test)]\nuse crate::b::X;\n"),
        ("b/probe.rs", "#![cfg(test)]\nuse crate::c::Y;\n"),
    ];
    assert_eq!(edges(&files), ["b -> a"]);
    assert!(circles(&files).is_empty());
}

#[test]
fn parent_and_child_references_are_not_edges() {
    let files = [
        (
            "lib.rs",
            "pub mod a;\npub use crate::a::b::X;\npub use a::c;\n",
        ),
        (
            "a/mod.rs",
            "pub mod b;\npub mod c;\npub use self::b::X;\npub use crate::a::c::Y;\nuse b::Z;\n\
             pub struct Shared;\n",
        ),
        (
            "a/b.rs",
            "use super::Shared;\nuse crate::a::Shared as S2;\nuse crate::Root;\nuse super::*;\n",
        ),
        ("a/c.rs", "use super::super::a::Shared;\n"),
    ];
    assert!(edges(&files).is_empty(), "{:?}", edges(&files));
}

#[test]
fn a_reference_into_another_branch_is_an_edge_between_the_children_of_their_common_ancestor() {
    let files = [
        ("lib.rs", ROOT),
        ("model/mod.rs", "pub mod encoder;\npub mod gru;\n"),
        (
            "model/encoder.rs",
            "use super::gru::Gru;\nuse crate::model::gru::Cell;\nuse crate::data::join::J;\n",
        ),
        ("model/gru.rs", ""),
        ("data/mod.rs", "pub mod join;\n"),
        ("data/join.rs", ""),
        ("train.rs", "use crate::data::join::Joined;\n"),
    ];
    assert_eq!(
        edges(&files),
        ["model -> data", "train -> data", "model: encoder -> gru"]
    );
}

#[test]
fn main_rs_and_bin_files_are_not_part_of_the_library() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", ""),
        ("b.rs", "use crate::a::X;\n"),
        ("main.rs", "mod b;\nuse crate::b::Y;\n"),
        ("bin/tool.rs", "use crate::b::Y;\n"),
    ];
    assert_eq!(edges(&files), ["b -> a"]);
}

#[test]
fn a_visibility_restriction_and_inline_modules_are_read_correctly() {
    let source = "pub(in crate::b) fn f() {}\n\
                  pub(crate) fn g() {}\n\
                  mod inner {\n\
                  \x20   use super::h;\n\
                  \x20   use self::deep::k;\n\
                  }\n\
                  use super::m;\n";
    assert_eq!(
        paths(source, "a::x"),
        [
            "crate::a::x::h",
            "crate::a::x::inner::deep::k",
            "crate::a::m"
        ]
    );
}
