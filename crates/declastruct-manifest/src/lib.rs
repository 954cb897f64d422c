//! .what = the manifest and the resources it declares: the loader with located diagnostics, each kind of resource
//! (`kinds`, one module a kind behind the `Kind` trait), and the resources observed live, which the engine plans
//! .why = the command line is arguments, commands and rendering; what a manifest means, and how each kind is read
//! from AWS and applied, is here, usable without it (and measured without it: `benches/engine.rs`)

pub mod input_file;
pub mod kinds;
pub mod located;
pub mod manifest;
pub mod resources;
