use std::borrow::Cow;
use std::collections::HashMap;

use miette::SourceSpan;
use serde_json::Value;
use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// .what = a YAML value with the byte span it came from
/// .why = every manifest error names the file, line and column of the offending value
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// the value
    pub value: NodeValue,
    /// where it starts and how far it reaches
    pub span: SourceSpan,
}

/// .what = the three shapes a YAML value takes
/// .why = scalars are already resolved to JSON types (YAML 1.2 core schema)
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// a string, number, boolean or null
    Scalar(Value),
    /// a list
    Sequence(Vec<Node>),
    /// a map, keys in document order
    Mapping(Vec<(Node, Node)>),
    /// a string value that was one whole variable: it is read as the type its field expects (a number where a
    /// number is expected, as `port: ${PORT}`), and as a string everywhere else
    Variable {
        /// the variable's value
        text: String,
        /// the value as YAML would type it as a plain scalar: a number or a boolean, else the string
        typed: Value,
    },
    /// a value already reported as wrong (or a missing one): read as the most neutral value its field accepts,
    /// so that the rest of its resource is still checked and every problem is reported at once
    Reported,
}

impl NodeValue {
    /// .what = the node a whole-variable string becomes
    /// .why = see `NodeValue::Variable`
    pub fn variable(text: String) -> Self {
        let typed = match resolve_plain(&text) {
            value @ (Value::Number(_) | Value::Bool(_)) => value,
            _ => Value::String(text.clone()),
        };
        Self::Variable { text, typed }
    }
}

/// a plain scalar's value under the YAML 1.2 core schema: null, a boolean, a number, or the string
fn resolve_plain(text: &str) -> Value {
    if !may_be_typed(text) {
        return Value::String(text.to_string());
    }
    match Yaml::from_str(text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(flag) => Value::Bool(flag),
        Yaml::Integer(number) => Value::from(number),
        Yaml::Real(real) => real
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.to_string()), Value::Number),
        _ => Value::String(text.to_string()),
    }
}

/// .what = a YAML syntax problem and where it is
/// .why = the loader turns it into a diagnostic with a span
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxProblem {
    /// a stable code, e.g. `declastruct::manifest::syntax`
    pub code: &'static str,
    /// what is wrong
    pub message: String,
    /// what to do
    pub help: String,
    /// where
    pub span: SourceSpan,
}

impl SyntaxProblem {
    fn syntax(message: &str, span: SourceSpan) -> Self {
        let help = if message.contains("flow") || message.contains("did not find expected ','") {
            "fix the YAML syntax at the marked position; inside `{ ... }` or `[ ... ]` a value that starts with `{`, `[`, `*`, `&` or `$` must be quoted (or use block style, one key per line)"
        } else {
            "fix the YAML syntax at the marked position (indentation, a missing `:` or an unclosed bracket)"
        };
        Self {
            code: "declastruct::manifest::syntax",
            message: format!("the manifest is not valid YAML: {message}"),
            help: help.into(),
            span,
        }
    }
}

/// .what = what is wrong with the indentation of the line at `line_start`, said with the lines it is measured
/// against: the line above (when it is a key that already has a value) and the block the key seems to belong to
/// .why = YAML's own message ("mapping values are not allowed in this context") names neither
fn indentation_help(source: &str, line_start: usize) -> Option<String> {
    let indent = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let number = |offset: usize| source[..offset].matches('\n').count() + 1;
    let line = source[line_start..].lines().next()?;
    let here = indent(line);
    let key = line.trim().split(':').next()?.trim();
    // the lines above that say something, nearest first, with their offsets
    let mut above = Vec::new();
    let mut end = line_start;
    while end > 0 {
        let start = source[..end - 1]
            .rfind('\n')
            .map_or(0, |newline| newline + 1);
        let text = &source[start..end - 1];
        if !text.trim().is_empty() && !text.trim_start().starts_with('#') {
            above.push((start, text));
        }
        end = start;
    }
    let (previous_start, previous) = *above.first()?;
    let previous_indent = indent(previous);
    let (previous_key, previous_value) = previous.trim().split_once(':')?;
    if here <= previous_indent || previous_value.trim().is_empty() {
        return None;
    }
    let mut help = format!(
        "`{key}:` on line {} is indented {here} spaces, more than `{}:` on line {} ({previous_indent} spaces), which already has a value: indent it {previous_indent} spaces to line up with it",
        number(line_start),
        previous_key.trim().trim_start_matches("- "),
        number(previous_start),
    );
    let empty_key_above = above
        .get(1)
        .filter(|(_, text)| indent(text) == previous_indent && text.trim_end().ends_with(':'));
    if let Some((block_start, block)) = empty_key_above {
        // the key above the previous one, at its indentation, has no value: they were meant under it
        help.push_str(&format!(
            "; if both belong under `{}` (line {}), indent both more than it",
            block.trim().trim_start_matches("- "),
            number(*block_start)
        ));
    } else if let Some((block_start, block)) = above
        .iter()
        .find(|(_, text)| indent(text) < previous_indent && text.trim_end().ends_with(':'))
    {
        help.push_str(&format!(
            "; the block they are in starts at `{}` (line {})",
            block.trim().trim_start_matches("- "),
            number(*block_start)
        ));
    }
    Some(help)
}

/// how many values aliases may expand to in one manifest: a real one needs a few hundred; a "billion laughs"
/// needs billions
pub const ALIAS_EXPANSION_LIMIT: usize = 10_000;
/// how deep collections may nest: a manifest needs five levels
pub const NESTING_LIMIT: usize = 64;

/// a path step into a tree
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// a map key
    Key(String),
    /// a list index
    Index(usize),
}

impl Node {
    /// .what = the node as a plain JSON value
    /// .why = serde deserializes the manifest's types from it
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Scalar(value) | NodeValue::Variable { typed: value, .. } => value.clone(),
            NodeValue::Reported => Value::Null,
            NodeValue::Sequence(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Mapping(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| (key.key_text(), value.to_json()))
                    .collect(),
            ),
        }
    }

    fn key_text(&self) -> String {
        self.key_str().into_owned()
    }

    /// .what = this node's text as a map key: a string as is, another scalar as JSON prints it
    /// .why = keys are compared often; a string key is borrowed, never copied
    pub fn key_str(&self) -> Cow<'_, str> {
        match &self.value {
            NodeValue::Scalar(Value::String(text)) => Cow::Borrowed(text),
            NodeValue::Scalar(other) => Cow::Owned(other.to_string()),
            _ => Cow::Borrowed(""),
        }
    }

    /// .what = the value under map key `key`, taken out of this map (a null node when there is none)
    /// .why = the loader moves each resource's node into its declaration instead of copying it
    pub fn into_entry(self, key: &str) -> Node {
        let span = self.span;
        match self.value {
            NodeValue::Mapping(entries) => entries
                .into_iter()
                .find(|(candidate, _)| candidate.key_str() == key)
                .map(|(_, value)| value),
            _ => None,
        }
        .unwrap_or(Node {
            value: NodeValue::Scalar(Value::Null),
            span,
        })
    }

    /// .what = the items of a list, taken out of it (none when this is not a list)
    /// .why = see `into_entry`
    pub fn into_items(self) -> std::vec::IntoIter<Node> {
        match self.value {
            NodeValue::Sequence(items) => items.into_iter(),
            _ => Vec::new().into_iter(),
        }
    }

    /// .what = the value under map key `key`, if this is a map that has it
    /// .why = walks paths and finds fields to point at
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, value)| value)
    }

    /// .what = the key node and the value node of map key `key`
    /// .why = an unknown field is pointed at by its key, a wrong value by its value
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            NodeValue::Mapping(entries) => entries
                .iter()
                .find(|(candidate, _)| candidate.key_str() == key)
                .map(|(key, value)| (key, value)),
            _ => None,
        }
    }

    /// .what = the node at `path`, as deep as it can be followed
    /// .why = an error deep in a resource still points as close to its cause as the tree allows
    pub fn walk(&self, path: &[Step]) -> &Node {
        let mut node = self;
        for step in path {
            let next = match (step, &node.value) {
                (Step::Key(key), _) => node.get(key),
                (Step::Index(index), NodeValue::Sequence(items)) => items.get(*index),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }

    /// .what = changes the node at `path` (as deep as it can be followed) with `edit`
    /// .why = a reported problem is set aside in a copy of its resource, so the rest can still be checked
    pub fn edit_at(&mut self, path: &[Step], edit: impl FnOnce(&mut Node)) {
        if let Some((step, rest)) = path.split_first() {
            let child = match (step, &mut self.value) {
                (Step::Key(key), NodeValue::Mapping(entries)) => entries
                    .iter_mut()
                    .find(|(candidate, _)| candidate.key_str() == *key)
                    .map(|(_, value)| value),
                (Step::Index(index), NodeValue::Sequence(items)) => items.get_mut(*index),
                _ => None,
            };
            if let Some(child) = child {
                child.edit_at(rest, edit);
                return;
            }
        }
        edit(self);
    }

    /// .what = whether following `path` meets a value already reported
    /// .why = what a set-aside value leads to is a consequence, never a problem of its own
    pub fn reaches_reported(&self, path: &[Step]) -> bool {
        let mut node = self;
        for step in path {
            if matches!(node.value, NodeValue::Reported) {
                return true;
            }
            let next = match (step, &node.value) {
                (Step::Key(key), _) => node.get(key),
                (Step::Index(index), NodeValue::Sequence(items)) => items.get(*index),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        matches!(node.value, NodeValue::Reported)
    }

    /// .what = this node's first line only
    /// .why = a whole resource is labelled by its first line, not by twenty lines of highlight
    pub fn first_line_span(&self, source: &str) -> SourceSpan {
        let start = self.span.offset().min(source.len());
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |end| start + end);
        clamped_span(source, start, line_end)
    }
}

/// .what = the span from `start` to `end`, moved inside `source` and onto character boundaries
/// .why = a diagnostic must never slice text in the middle of a character
fn clamped_span(source: &str, start: usize, end: usize) -> SourceSpan {
    let boundary = |mut offset: usize| {
        offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    };
    let start = boundary(start);
    let end = boundary(end.max(start));
    (start, end - start).into()
}

/// .what = parses the one YAML document of `source` into a tree with spans; a leading byte-order mark is allowed
/// .why = serde_yaml keeps no spans for nested values; this keeps one for every value, and refuses what a
/// manifest never needs: a second document, aliases that expand without bound, nesting without bound
pub fn parse(source: &str) -> Result<Option<Node>, SyntaxProblem> {
    // YAML allows a byte-order mark before the document; it is not part of the first key
    let base = if source.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let text = &source[base..];
    // the parser counts characters; in ASCII text they are bytes, and no table is needed
    let char_offsets: Vec<usize> = if text.is_ascii() {
        Vec::new()
    } else {
        text.char_indices()
            .map(|(offset, _)| offset)
            .chain(std::iter::once(text.len()))
            .collect()
    };
    let mut builder = TreeBuilder {
        source,
        base,
        char_offsets: &char_offsets,
        stack: Vec::new(),
        anchors: HashMap::new(),
        expanded: 0,
        documents: 0,
        root: None,
        problem: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(error) = parser.load(&mut builder, true) {
        if let Some(problem) = builder.problem {
            return Err(problem);
        }
        let offset = builder.byte_offset(error.marker());
        // point at the character there, or at the last one when the problem is at the very end
        let start = clamped_span(source, offset, offset).offset();
        let start = if start == source.len() {
            source.char_indices().last().map_or(0, |(last, _)| last)
        } else {
            start
        };
        let length = source[start..].chars().next().map_or(0, char::len_utf8);
        let mut problem = SyntaxProblem::syntax(error.info(), (start, length).into());
        let line_start = source[..start].rfind('\n').map_or(0, |newline| newline + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |end| start + end);
        if source[line_start..line_end].contains("${") {
            problem.help = "inside `{ ... }` or `[ ... ]` YAML reads `{` as syntax: quote the variable (`port: \"${PORT}\"`, still read as a number) or write the map in block style, one key per line".into();
        } else if error.info().contains("mapping values are not allowed")
            && let Some(help) = indentation_help(source, line_start)
        {
            problem.help = help;
        }
        return Err(problem);
    }
    if let Some(problem) = builder.problem {
        return Err(problem);
    }
    Ok(builder.root)
}

enum Partial {
    Sequence {
        items: Vec<Node>,
        start: usize,
        anchor: usize,
    },
    Mapping {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        start: usize,
        anchor: usize,
    },
}

struct TreeBuilder<'a> {
    /// the whole file, a byte-order mark included
    source: &'a str,
    /// where the parsed text starts in `source`: past a byte-order mark
    base: usize,
    char_offsets: &'a [usize],
    stack: Vec<Partial>,
    /// each anchored node, with how many values it holds
    anchors: HashMap<usize, (Node, usize)>,
    /// how many values aliases expanded to so far
    expanded: usize,
    documents: usize,
    root: Option<Node>,
    problem: Option<SyntaxProblem>,
}

/// how many values a node holds, itself included
fn size_of(node: &Node) -> usize {
    match &node.value {
        NodeValue::Scalar(_) | NodeValue::Variable { .. } | NodeValue::Reported => 1,
        NodeValue::Sequence(items) => 1 + items.iter().map(size_of).sum::<usize>(),
        NodeValue::Mapping(entries) => {
            1 + entries
                .iter()
                .map(|(key, value)| size_of(key) + size_of(value))
                .sum::<usize>()
        }
    }
}

/// the YAML merge key `<<`: the entries of the merged map (or maps, earlier ones first) that the map does not set
/// itself
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    if !entries.iter().any(|(key, _)| key.key_str() == "<<") {
        return entries;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(key, _)| key.key_str() == "<<");
    for (_, merged) in merges {
        let sources = match merged.value {
            NodeValue::Sequence(items) => items,
            other => vec![Node {
                value: other,
                span: merged.span,
            }],
        };
        for source in sources {
            if let NodeValue::Mapping(inherited) = source.value {
                for (key, value) in inherited {
                    if !own
                        .iter()
                        .any(|(existing, _)| existing.key_str() == key.key_str())
                    {
                        own.push((key, value));
                    }
                }
            }
        }
    }
    own
}

impl TreeBuilder<'_> {
    fn byte_offset(&self, marker: &Marker) -> usize {
        let in_text = if self.char_offsets.is_empty() {
            marker.index()
        } else {
            self.char_offsets
                .get(marker.index())
                .copied()
                .unwrap_or(self.source.len())
        };
        (self.base + in_text).min(self.source.len())
    }

    fn refuse(&mut self, code: &'static str, message: String, help: &str, span: SourceSpan) {
        if self.problem.is_none() {
            self.problem = Some(SyntaxProblem {
                code,
                message,
                help: help.into(),
                span,
            });
        }
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = size_of(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Partial::Sequence { items, .. }) => items.push(node),
            Some(Partial::Mapping {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    let text = key.key_str();
                    if self.problem.is_none()
                        && entries
                            .iter()
                            .any(|(existing, _)| existing.key_str() == text)
                    {
                        self.problem = Some(SyntaxProblem::syntax(
                            &format!("the key `{text}` appears twice in one map"),
                            key.span,
                        ));
                    }
                    entries.push((key, node));
                }
            },
        }
    }

    fn scalar_span(&self, start: usize, text: &str, style: TScalarStyle) -> SourceSpan {
        let quotes = if matches!(
            style,
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
        ) {
            2
        } else {
            0
        };
        let start = start.min(self.source.len());
        let line_end = self.source[start..]
            .find('\n')
            .map_or(self.source.len(), |end| start + end);
        clamped_span(
            self.source,
            start,
            (start + text.len() + quotes).min(line_end),
        )
    }
}

/// whether a plain scalar could resolve to something other than a string: a null, a boolean or a number
/// (the YAML 1.2 core schema); a plain word such as `running` or `vpc-main-bastion` cannot
fn may_be_typed(text: &str) -> bool {
    match text.as_bytes().first() {
        None => true,
        Some(first) => !first.is_ascii_alphabetic() || b"tTfFnN".contains(first),
    }
}

impl MarkedEventReceiver for TreeBuilder<'_> {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let offset = self.byte_offset(&marker);
        if self.problem.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let span = self.scalar_span(offset, &text, style);
                let value = if matches!(style, TScalarStyle::Plain) {
                    resolve_plain(&text)
                } else {
                    Value::String(text)
                };
                self.finish(
                    Node {
                        value: NodeValue::Scalar(value),
                        span,
                    },
                    anchor,
                );
            }
            Event::SequenceStart(..) | Event::MappingStart(..)
                if self.stack.len() >= NESTING_LIMIT =>
            {
                self.refuse(
                    "declastruct::manifest::too_deep",
                    format!("the manifest nests more than {NESTING_LIMIT} levels deep"),
                    "a manifest needs a few levels: look for brackets that were never closed",
                    clamped_span(self.source, offset, offset + 1),
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Partial::Sequence {
                items: Vec::new(),
                start: offset,
                anchor,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Partial::Mapping {
                entries: Vec::new(),
                pending_key: None,
                start: offset,
                anchor,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, start, anchor) = match self.stack.pop() {
                    Some(Partial::Sequence {
                        items,
                        start,
                        anchor,
                    }) => (NodeValue::Sequence(items), start, anchor),
                    Some(Partial::Mapping {
                        entries,
                        start,
                        anchor,
                        ..
                    }) => (NodeValue::Mapping(merge_keys(entries)), start, anchor),
                    None => return,
                };
                self.finish(
                    Node {
                        value,
                        span: clamped_span(self.source, start, offset),
                    },
                    anchor,
                );
            }
            Event::Alias(anchor) => {
                let size = self.anchors.get(&anchor).map_or(1, |(_, size)| *size);
                self.expanded = self.expanded.saturating_add(size);
                if self.expanded > ALIAS_EXPANSION_LIMIT {
                    // never expanded: a "billion laughs" is refused before it costs memory
                    self.refuse(
                        "declastruct::manifest::alias_expansion",
                        format!(
                            "the manifest's aliases expand to more than {ALIAS_EXPANSION_LIMIT} values"
                        ),
                        "a manifest needs a few aliases of small maps: this looks like an alias bomb; write the values out",
                        clamped_span(self.source, offset, offset + 1),
                    );
                    return;
                }
                let node = self
                    .anchors
                    .get(&anchor)
                    .map(|(node, _)| node.clone())
                    .unwrap_or(Node {
                        value: NodeValue::Scalar(Value::Null),
                        span: (offset, 1).into(),
                    });
                self.finish(node, 0);
            }
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    let line_end = self.source[offset..]
                        .find('\n')
                        .map_or(self.source.len(), |end| offset + end);
                    self.refuse(
                        "declastruct::manifest::several_documents",
                        "the manifest holds more than one YAML document".into(),
                        "a manifest is one document: remove the `---` and what follows, or put it in a manifest of its own (`-f`)",
                        clamped_span(self.source, offset, line_end),
                    );
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_scalars_and_keeps_spans() {
        let source = "a: 1\nb:\n  - 'x'\n  - true\n  - 1.5\n  - ~\nc: \"7\"\n";
        let root = parse(source).expect("valid").expect("a document");
        assert_eq!(
            root.to_json(),
            json!({"a": 1, "b": ["x", true, 1.5, null], "c": "7"})
        );
        let item = root.walk(&[Step::Key("b".into()), Step::Index(1)]);
        assert_eq!(
            &source[item.span.offset()..item.span.offset() + item.span.len()],
            "true"
        );
        let (key, _) = root.entry("c").expect("c");
        assert_eq!(key.span.offset(), source.find("c:").expect("c"));
    }

    #[test]
    fn spans_count_bytes_not_characters() {
        let source = "name: \"héllo wörld\"\nport: 5\n";
        let root = parse(source).expect("valid").expect("a document");
        let port = root.get("port").expect("port");
        assert_eq!(
            &source[port.span.offset()..port.span.offset() + port.span.len()],
            "5"
        );
    }

    #[test]
    fn rejects_duplicate_keys() {
        let problem = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(problem.span.offset(), 5);
        assert!(problem.message.contains("`a` appears twice"));
    }

    #[test]
    fn reports_syntax_errors_with_a_position() {
        let problem = parse("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(problem.span.offset() > 0);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_key() {
        let source = "\u{feff}a: 1\nb: x\n";
        let root = parse(source).expect("valid").expect("a document");
        assert_eq!(root.to_json(), json!({"a": 1, "b": "x"}));
        let b = root.get("b").expect("b");
        assert_eq!(
            &source[b.span.offset()..b.span.offset() + b.span.len()],
            "x"
        );
    }

    #[test]
    fn a_second_document_is_refused_where_it_starts() {
        let source = "a: 1\n---\nb: 2\n";
        let problem = parse(source).expect_err("two documents");
        assert_eq!(problem.code, "declastruct::manifest::several_documents");
        assert_eq!(problem.span.offset(), source.find("---").expect("---"));
    }

    #[test]
    fn an_alias_bomb_is_refused_without_expanding_it() {
        let mut source = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let previous = (b'a' + level - 1) as char;
            let name = (b'a' + level) as char;
            let aliases = vec![format!("*{previous}"); 9].join(", ");
            source.push_str(&format!("{name}: &{name} [{aliases}]\n"));
        }
        let started = std::time::Instant::now();
        let problem = parse(&source).expect_err("a bomb");
        assert_eq!(problem.code, "declastruct::manifest::alias_expansion");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn merge_keys_merge_and_own_keys_win() {
        let source = "base: &base {a: 1, b: 2}\nthing:\n  <<: *base\n  b: 3\n";
        let root = parse(source).expect("valid").expect("a document");
        assert_eq!(
            root.get("thing").expect("thing").to_json(),
            json!({"b": 3, "a": 1})
        );
    }

    #[test]
    fn nesting_has_a_limit() {
        let source = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let problem = parse(&source).expect_err("too deep");
        assert_eq!(problem.code, "declastruct::manifest::too_deep");
        // deeper still, and never closed: the parser's own limit refuses it, with a position
        let problem = parse(&"[".repeat(100_000)).expect_err("refused");
        assert!(problem.span.offset() > 0);
    }

    #[test]
    fn an_empty_document_is_none() {
        assert_eq!(parse("# nothing\n").expect("valid"), None);
    }
}
