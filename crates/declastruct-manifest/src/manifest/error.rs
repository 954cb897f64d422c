use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};

/// .what = one problem with a manifest, pointing at its file, line and column
/// .why = the user fixes the manifest from the message alone
#[derive(Debug)]
pub struct ManifestError {
    /// a stable code, e.g. `declastruct::manifest::unknown_field`
    pub code: &'static str,
    /// what is wrong
    pub message: String,
    /// what to do
    pub help: String,
    /// the file, when the problem is in it
    pub source: Option<Arc<NamedSource<String>>>,
    /// where, with a short label each
    pub labels: Vec<(String, SourceSpan)>,
}

impl ManifestError {
    /// .what = a problem at one place in the file
    /// .why = most problems have exactly one place
    pub fn at(
        code: &'static str,
        source: &Arc<NamedSource<String>>,
        span: SourceSpan,
        label: impl Into<String>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            help: help.into(),
            source: Some(source.clone()),
            labels: vec![(label.into(), span)],
        }
    }

    /// .what = adds another labelled place
    /// .why = a duplicate is shown together with the first occurrence
    pub fn also(mut self, label: impl Into<String>, span: SourceSpan) -> Self {
        self.labels.push((label.into(), span));
        self
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for ManifestError {}

impl Diagnostic for ManifestError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.help))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source
            .as_deref()
            .map(|source| source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let source = self.source.as_ref()?;
        Some(Box::new(
            self.labels
                .iter()
                .filter(|(_, span)| renderable(source.inner(), *span))
                .map(|(label, span)| LabeledSpan::new_with_span(Some(label.clone()), *span)),
        ))
    }
}

/// .what = whether miette can draw a label at `span`: not beyond column 60,000 of its line
/// .why = miette 7.6 panics on a label that starts at column 65,536 or later (a one-line manifest, a key of
/// 100,000 characters); such a diagnostic keeps its message and its help, without the drawing
pub fn renderable(source: &str, span: SourceSpan) -> bool {
    let offset = span.offset().min(source.len());
    let line_start = source[..offset]
        .rfind('\n')
        .map_or(0, |newline| newline + 1);
    offset - line_start < 60_000
}
