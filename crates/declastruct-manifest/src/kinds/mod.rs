//! .what = each kind of resource a manifest declares, one module a kind, behind the `Kind` trait; and the registry
//! of kinds, from which the manifest's `ResourceDeclaration` (and so its JSON Schema), `KINDS` and the loader's
//! dispatch are made
//! .why = a new kind is its module, one line of the registry and its variant of `Observed` (and, when it is read
//! from AWS in batch, its place in `LiveState`), not a change in every file that reads, observes, applies or shows
//! resources (`docs/architecture.md`, "Where things go")
//!
//! - `ec2_instance`: a bastion (`DeclaredAwsEc2Instance`), started and stopped
//! - `rds_cluster`: a cluster (`DeclaredAwsRdsCluster`), a read-only reference
//! - `rds_instance`: a DB instance (`DeclaredAwsRdsInstance`), a read-only reference
//! - `vpc_tunnel`: a tunnel (`DeclaredAwsVpcTunnel`), opened and closed on this machine

pub mod ec2_instance;
pub mod rds_cluster;
pub mod rds_instance;
pub mod vpc_tunnel;

use std::future::Future;

use declastruct_aws::{AwsError, ContextAwsApi};
use declastruct_engine::{Resource, ResourceAddress};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use ec2_instance::{Ec2InstanceDeclaration, ObservedBastion, bastion_address};
pub use rds_cluster::{ObservedCluster, RdsClusterDeclaration, cluster_address};
pub use rds_instance::{ObservedInstance, RdsInstanceDeclaration, instance_address};
pub use vpc_tunnel::{
    ObservedTunnel, PreviousIdentity, RemovedTunnel, Stranded, VpcTunnelDeclaration,
    record_address, tunnel_address,
};

use crate::resources::{Assembly, References};

/// .what = one kind of declared resource: its declaration (the type that implements it), its address, what it
/// names, how it is observed, how a change of it is applied, and its row in `status`
/// .why = everything a kind means is in its module; the loader, the observation, `apply` and `status` call it
/// through this trait and the registry (`kinds!` below), whatever the kind
pub trait Kind: Serialize + DeserializeOwned + JsonSchema + Clone + PartialEq {
    /// .what = the manifest's `kind:` and the class of plans, e.g. `DeclaredAwsEc2Instance`
    /// .why = plans and slugs use the TypeScript declastruct's class names; the registry checks that its variant
    /// is named alike
    const CLASS: &'static str;

    /// .what = the kind in a word, as the narrow `status` table names it, e.g. `bastion`
    /// .why = a 100-column table has no room for the class
    const NOUN: &'static str;

    /// .what = the declared resource once observed: the engine's `Resource`, which `apply` acts on
    /// .why = planned by the engine, applied by `Kind::apply`, shown by `Kind::status_row`
    type Observed: Resource;

    /// .what = the resource's class and slug
    /// .why = the slug is what `plan` prints and `logs ADDRESS` takes
    fn address(&self) -> ResourceAddress;

    /// .what = the bastions, clusters, instances and endpoints this declaration (the `index`th resource) names,
    /// each with where it is named and what needs it to exist
    /// .why = everything a manifest names is read from AWS in one batch a kind (`read_live_state`)
    fn references(&self, index: usize, references: &mut References);

    /// .what = this declaration (the `index`th resource) observed: the resources it adds to the plan, from the
    /// batched reads
    /// .why = no call of its own: every live fact was read in batch before
    fn observe(&self, index: usize, assembly: &mut Assembly<'_>);

    /// .what = applies a change of an observed resource through the AWS crate's operations; what a person should
    /// know beside "done" (a tunnel released that stays open for others)
    /// .why = `apply` runs every kind's change the same way, and the CLI and SDK users run the same operations
    fn apply(
        observed: &Self::Observed,
        context: &ContextAwsApi,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;

    /// .what = the observed resource's fields in `status` (its class and slug are added before them)
    /// .why = `status --json` shows each kind's own facts: a bastion's instance id, a tunnel's pid and health
    fn status_row(observed: &Self::Observed) -> Value;
}

/// .what = whether two strings are equal, at compile time
/// .why = the registry checks that each variant is named as its kind's `CLASS`
const fn same_text(left: &str, right: &str) -> bool {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    if left.len() != right.len() {
        return false;
    }
    let mut index = 0;
    while index < left.len() {
        if left[index] != right[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// .what = reads one declaration of a kind chosen at run time
/// .why = the loader reads each resource with its own located diagnostics; the registry picks the type
pub trait ReadDeclaration {
    /// what reading fails with
    type Error;
    /// .what = the declaration, read as a `T`
    /// .why = called once, with the kind's declaration type
    fn read<T: DeserializeOwned>(self) -> Result<T, Self::Error>;
}

/// .what = the registry: every kind, with the doc the schema shows for it, its `kind:` and its declaration type
/// .why = `ResourceDeclaration`, `KINDS`, the loader's dispatch and `noun_of` are made from this one list
macro_rules! kinds {
    ($($(#[doc = $doc:literal])* $class:ident($declaration:ty),)*) => {
        /// .what = one declared resource, told apart by `kind`
        /// .why = unknown kinds are errors, never ignored
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "kind")]
        #[allow(
            clippy::large_enum_variant,
            reason = "a manifest holds tens of declarations, read once; a tunnel's is the largest and the most common"
        )]
        pub enum ResourceDeclaration {
            $($(#[doc = $doc])* $class($declaration),)*
        }

        /// .what = the `kind:` of every kind, in the registry's order
        /// .why = the loader names them in its help, and suggests the closest one to a misspelt kind
        pub const KINDS: &[&str] = &[$(stringify!($class)),*];

        $(const _: () = assert!(
            same_text(stringify!($class), <$declaration as Kind>::CLASS),
            "a variant of the registry is named as its kind's CLASS"
        );)*

        impl ResourceDeclaration {
            /// .what = the resource's class and slug
            /// .why = the slug is what `plan` prints and `logs ADDRESS` takes: `{exid}`, `{name}`,
            /// or `{bastion}.{cluster}.{port}` for a tunnel
            pub fn address(&self) -> ResourceAddress {
                match self {
                    $(Self::$class(declaration) => declaration.address(),)*
                }
            }

            /// .what = what the declaration (the `index`th resource) names, for the batched reads
            /// .why = see `Kind::references`
            pub fn references(&self, index: usize, references: &mut References) {
                match self {
                    $(Self::$class(declaration) => declaration.references(index, references),)*
                }
            }

            /// .what = the declaration observed, into `assembly`
            /// .why = see `Kind::observe`
            pub fn observe(&self, index: usize, assembly: &mut Assembly<'_>) {
                match self {
                    $(Self::$class(declaration) => declaration.observe(index, assembly),)*
                }
            }

            /// .what = a declaration of kind `kind`, read by `reader`; `None` when no kind is named so
            /// .why = the loader reads `kind:` first, then the rest as that kind's declaration
            pub fn read<R: ReadDeclaration>(kind: &str, reader: R) -> Option<Result<Self, R::Error>> {
                match kind {
                    $(stringify!($class) => Some(reader.read::<$declaration>().map(Self::$class)),)*
                    _ => None,
                }
            }
        }

        /// .what = a kind's word for `status` (`bastion`), by its class
        /// .why = the narrow table names a resource by its kind in a word; an unknown class is shown as it is
        pub fn noun_of(class: &str) -> Option<&'static str> {
            $(if class == <$declaration as Kind>::CLASS {
                return Some(<$declaration as Kind>::NOUN);
            })*
            None
        }
    };
}

kinds! {
    /// an EC2 instance used as a bastion, referenced by its `exid` tag
    DeclaredAwsEc2Instance(Ec2InstanceDeclaration),
    /// a read-only reference to an RDS cluster, by cluster identifier
    DeclaredAwsRdsCluster(RdsClusterDeclaration),
    /// a read-only reference to a plain (non-Aurora) RDS DB instance, by DB instance identifier
    DeclaredAwsRdsInstance(RdsInstanceDeclaration),
    /// an SSM port-forwarding tunnel from a local port through a bastion into a cluster
    DeclaredAwsVpcTunnel(VpcTunnelDeclaration),
}

/// .what = a value as JSON, `null` when it cannot be one
/// .why = every kind's documents and rows are JSON
pub(crate) fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a reader that says which type it was asked for
    struct TypeName;

    impl ReadDeclaration for TypeName {
        type Error = String;

        fn read<T: DeserializeOwned>(self) -> Result<T, String> {
            Err(std::any::type_name::<T>().to_string())
        }
    }

    #[test]
    fn each_kind_is_read_as_its_declaration_and_named_by_its_noun() {
        for kind in KINDS {
            let asked = ResourceDeclaration::read(kind, TypeName).map(Result::err);
            assert!(
                matches!(&asked, Some(Some(name)) if name.ends_with("Declaration")),
                "{kind}: {asked:?}"
            );
            assert!(noun_of(kind).is_some(), "{kind}");
        }
        assert!(ResourceDeclaration::read("DeclaredAwsNothing", TypeName).is_none());
        assert_eq!(noun_of("DeclaredAwsVpcTunnel"), Some("tunnel"));
        assert_eq!(noun_of("Unknown"), None);
    }
}
