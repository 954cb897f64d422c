//! .what = the manifest: its types (and so its JSON Schema), the loader and every offline validation
//! .why = a bad manifest is reported with file, line and column before any AWS call

mod de_error;
mod error;
mod load;
mod model;
mod node_de;
mod relations;
mod reread;
mod translate;
mod variables;
mod yaml_tree;

pub use error::{ManifestError, renderable};
pub use load::{DeclaredResource, Manifest, load_manifest, parse_manifest, parse_manifest_with};
pub use model::{ManifestDocument, manifest_schema};
pub use variables::{Variables, referenced_variables};
