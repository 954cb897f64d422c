//! .what = the plan engine of declastruct: actions, diffs, dependency order, plan documents and apply scheduling
//! .why = keeps the logic of "how the live world differs from the wish" free of AWS and of printing,
//! so that a new resource kind needs no change here and every rule is testable in memory

#![deny(missing_docs)]
// a library never writes to the terminal: only the binary renders
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod action;
mod apply;
mod diff;
mod error;
mod order;
mod plan;
mod resource;

pub use action::Action;
pub use apply::{ApplyOutcome, ApplyReport, ChangeOutcome, run_changes};
pub use diff::{project_onto, projection_equals, render_document, unified_difference};
pub use error::EngineError;
pub use order::order_by_dependencies;
pub use plan::{Change, ChangeState, Plan, Wish, canonical_json, compute_plan_hash};
pub use resource::{Edge, Resource, ResourceAddress, declared_action};
