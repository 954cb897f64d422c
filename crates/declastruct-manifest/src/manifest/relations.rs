//! .what = the rules between resources of a manifest: one declaration per address, one tunnel per local port, no
//! OPEN tunnel through a bastion declared stopped
//! .why = checked once every resource reads, offline, with both places located

use std::collections::HashMap;
use std::sync::Arc;

use declastruct_aws::{DesiredInstanceStatus, Ec2InstanceRef, VpcTunnelStatus};
use miette::NamedSource;

use super::error::ManifestError;
use super::load::DeclaredResource;
use super::yaml_tree::Step;
use crate::kinds::{Ec2InstanceDeclaration, ResourceDeclaration, noun_of};

/// duplicate resources, two tunnels on one port, an OPEN tunnel through a bastion declared stopped
pub(super) fn check_relations(
    resources: &[DeclaredResource],
    source: &Arc<NamedSource<String>>,
) -> Vec<ManifestError> {
    let text = source.inner();
    let mut errors = Vec::new();
    let mut seen: HashMap<_, &DeclaredResource> = HashMap::new();
    let mut ports: HashMap<u16, &DeclaredResource> = HashMap::new();
    let mut alike: HashMap<String, (&str, &DeclaredResource)> = HashMap::new();
    let mut bastions: HashMap<String, (&Ec2InstanceDeclaration, &DeclaredResource)> =
        HashMap::new();

    let name_span =
        |declared: &DeclaredResource| declared.node.walk(&[Step::Key("name".into())]).span;
    for (index, resource) in resources.iter().enumerate() {
        let address = resource.declaration.address();
        let named = matches!(&resource.declaration, ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) if tunnel.name.is_some());
        // a name is an address every command takes alone (`--target NAME`): it must name one resource only
        if named
            && let Some(other) = resources.iter().find(|other| {
                let other_address = other.declaration.address();
                other_address.slug == address.slug && other_address.class != address.class
            })
        {
            let other_address = other.declaration.address();
            errors.push(
                ManifestError::at(
                    "declastruct::manifest::name_taken",
                    source,
                    name_span(resource),
                    "named here",
                    format!(
                        "resources[{index}].name: `{}` is also the address of the {} `{}`: `--target {}` could not tell them apart",
                        address.slug,
                        noun_of(&other_address.class).unwrap_or("resource"),
                        other_address.slug,
                        address.slug
                    ),
                    "give the tunnel a name no other resource's address has",
                )
                .also("that resource", other.node.first_line_span(text)),
            );
        }
        // names that differ only by case or by `-` against `_` share `exec`'s `DECLASTRUCT_<NAME>_URL`, and their
        // tunnel files on a case-insensitive disk (macOS)
        if let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) = &resource.declaration
            && let Some(name) = &tunnel.name
        {
            let folded: String = name
                .as_str()
                .chars()
                .map(|character| match character {
                    '-' => '_',
                    other => other.to_ascii_lowercase(),
                })
                .collect();
            match alike.get(&folded) {
                Some((first_name, first)) if *first_name != name.as_str() => {
                    errors.push(
                        ManifestError::at(
                            "declastruct::manifest::names_alike",
                            source,
                            name_span(resource),
                            "named here",
                            format!(
                                "resources[{index}].name: `{name}` and `{first_name}` differ only by case or by `-` against `_`: `exec` would give both one variable, and a disk that ignores case one set of tunnel files"
                            ),
                            "rename one of the two so the names differ by a letter or a digit",
                        )
                        .also("the other", name_span(first)),
                    );
                }
                Some(_) => {}
                None => {
                    alike.insert(folded, (name.as_str(), resource));
                }
            }
        }
        if let Some(first) = seen.insert(address.clone(), resource) {
            if named {
                errors.push(
                    ManifestError::at(
                        "declastruct::manifest::duplicate_name",
                        source,
                        name_span(resource),
                        "named again here",
                        format!("two tunnels are named `{}`", address.slug),
                        "a tunnel's name is its address and is unique in a manifest: rename one of the two",
                    )
                    .also("first named here", name_span(first)),
                );
                continue;
            }
            errors.push(
                ManifestError::at(
                    "declastruct::manifest::duplicate_resource",
                    source,
                    resource.node.first_line_span(text),
                    "declared again here",
                    format!("{} `{}` is declared twice", address.class, address.slug),
                    "declare each resource once: remove one of the two, or merge them",
                )
                .also("first declared here", first.node.first_line_span(text)),
            );
        }
        match &resource.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                bastions.insert(instance.exid.clone(), (instance, resource));
            }
            ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => {
                let host_span = resource
                    .node
                    .walk(&[Step::Key("from".into()), Step::Key("host".into())])
                    .span;
                let host = tunnel.from.host.as_str();
                if tunnel.from.is_exposed() && !tunnel.from.expose {
                    errors.push(ManifestError::at(
                        "declastruct::manifest::host_not_loopback",
                        source,
                        host_span,
                        "not loopback",
                        format!("resources[{index}].from.host: `{host}` is not a loopback address: the tunnel would be reachable from beyond this machine"),
                        format!("use `localhost` or `127.0.0.1`; to listen on {host} on purpose (e.g. for Docker), add `expose: true` under `from:` (anyone who reaches that address reaches the database)"),
                    ));
                } else if tunnel.from.is_exposed()
                    && tunnel.via.transport == Some(declastruct_aws::TransportChoice::Plugin)
                {
                    errors.push(ManifestError::at(
                        "declastruct::manifest::expose_needs_native",
                        source,
                        host_span,
                        "the plugin listens on loopback only",
                        format!("resources[{index}].from.expose: listening on {host} needs the native transport, and `via.transport` is `plugin`"),
                        "remove `transport: plugin` (an exposed tunnel uses the native transport), or listen on `localhost`",
                    ));
                }
                if let Some(first) = ports.insert(tunnel.from.port, resource)
                    && !std::ptr::eq(first, resource)
                    && first.declaration.address() != address
                {
                    let port_span = |declared: &DeclaredResource| {
                        declared
                            .node
                            .walk(&[Step::Key("from".into()), Step::Key("port".into())])
                            .span
                    };
                    errors.push(
                        ManifestError::at(
                            "declastruct::manifest::duplicate_port",
                            source,
                            port_span(resource),
                            "used again here",
                            format!("two tunnels listen on local port {}", tunnel.from.port),
                            "give each tunnel its own `from.port`",
                        )
                        .also("first used here", port_span(first)),
                    );
                }
            }
            // the other kinds have no rule between resources
            _ => {}
        }
    }

    for resource in resources {
        let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) = &resource.declaration else {
            continue;
        };
        let Ec2InstanceRef::ByUnique { exid } = &tunnel.via.bastion else {
            continue;
        };
        if tunnel.status != VpcTunnelStatus::Open {
            continue;
        }
        if let Some((bastion, bastion_resource)) = bastions.get(exid)
            && bastion.status == Some(DesiredInstanceStatus::Stopped)
        {
            errors.push(
                ManifestError::at(
                    "declastruct::manifest::open_through_stopped_bastion",
                    source,
                    resource.node.walk(&[Step::Key("status".into())]).span,
                    "declared OPEN",
                    format!("the tunnel on local port {} is OPEN, but its bastion `{exid}` is declared stopped", tunnel.from.port),
                    "a tunnel needs a running bastion: set the tunnel to CLOSED, or the bastion to running",
                )
                .also(
                    "declared stopped",
                    bastion_resource.node.walk(&[Step::Key("status".into())]).span,
                ),
            );
        }
    }
    errors
}
