use miette::Diagnostic;
use thiserror::Error;

/// .what = the ways planning can fail inside the engine
/// .why = a dependency cycle is the user's to fix, a missing node is a bug: the split tells which
#[derive(Debug, Error, Diagnostic)]
pub enum EngineError {
    /// resources depend on each other in a circle
    #[error("the resources depend on each other in a cycle: {}", members.join(" -> "))]
    #[diagnostic(
        code(declastruct::plan::cycle),
        help(
            "break the cycle: a tunnel depends on its bastion and cluster, never the other way around"
        )
    )]
    Cycle {
        /// the slugs on the cycle
        members: Vec<String>,
    },

    /// an edge names a resource that is not in the plan
    #[error("unexpected: an ordering constraint names `{slug}`, which is not part of the plan")]
    #[diagnostic(
        code(declastruct::bug::unknown_edge),
        help("this is a bug in declastruct; please report it with your manifest")
    )]
    UnknownEdge {
        /// the slug that is not in the plan
        slug: String,
    },
}
