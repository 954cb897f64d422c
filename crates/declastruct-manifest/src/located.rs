use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};

/// .what = an error from AWS or a tunnel, pointed at the manifest line that caused it
/// .why = "bastion not found" is most useful next to the reference that named the bastion
#[derive(Debug)]
pub struct Located<E> {
    /// the error
    pub error: E,
    /// the manifest
    pub source: Arc<NamedSource<String>>,
    /// the declaration
    pub span: SourceSpan,
    /// a short label
    pub label: String,
    /// a warning, not an error: the command goes on
    pub warning: bool,
}

impl<E: fmt::Display> fmt::Display for Located<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(formatter)
    }
}

impl<E: std::error::Error> std::error::Error for Located<E> {}

impl<E: Diagnostic> Diagnostic for Located<E> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.error.code()
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.error.help()
    }

    fn severity(&self) -> Option<miette::Severity> {
        self.warning.then_some(miette::Severity::Warning)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&*self.source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let drawable = crate::manifest::renderable(self.source.inner(), self.span);
        Some(Box::new(
            drawable
                .then(|| LabeledSpan::new_with_span(Some(self.label.clone()), self.span))
                .into_iter(),
        ))
    }
}
