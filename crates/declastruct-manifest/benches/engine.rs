//! The engine without AWS: load and validate a manifest of N resources, then diff and order it against an
//! in-memory world (every bastion stopped, every tunnel closed, so every change is computed and rendered).
//!
//! `cargo bench -p declastruct-manifest --bench engine`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use declastruct_aws::internal::{VpcTunnelObservation, resolve_tunnel_target};
use declastruct_aws::{
    DeclaredAwsEc2Instance, DeclaredAwsRdsCluster, Ec2InstanceRef, Ec2InstanceStatus,
    RdsClusterHost, RdsClusterRef, VpcTunnelStatus,
};
use declastruct_engine::{Plan, Wish};
use declastruct_manifest::kinds::ResourceDeclaration;
use declastruct_manifest::kinds::vpc_tunnel::Inspected;
use declastruct_manifest::manifest::{Manifest, parse_manifest};
use declastruct_manifest::resources::{LiveState, assemble};
use declastruct_test_support::large_manifest;

/// a manifest of about `total` resources: one bastion and one cluster per 20, the rest tunnels
fn manifest_text(total: usize) -> String {
    let groups = (total / 20).max(1);
    large_manifest(total.saturating_sub(2 * groups).max(1), groups, 1024)
}

/// the live world, in memory
fn world_for(manifest: &Manifest) -> LiveState {
    let mut bastions = BTreeMap::new();
    let mut clusters = BTreeMap::new();
    for resource in &manifest.resources {
        match &resource.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                bastions.insert(
                    Ec2InstanceRef::by_exid(&instance.exid),
                    DeclaredAwsEc2Instance {
                        instance_id: Some(format!("i-{:017x}", bastions.len())),
                        exid: instance.exid.clone(),
                        status: Some(Ec2InstanceStatus::Stopped),
                        private_ip: Some("10.0.0.1".into()),
                        in_use_at: None,
                    },
                );
            }
            ResourceDeclaration::DeclaredAwsRdsCluster(cluster) => {
                clusters.insert(
                    RdsClusterRef::by_name(&cluster.name),
                    DeclaredAwsRdsCluster {
                        name: cluster.name.clone(),
                        arn: None,
                        host: Some(RdsClusterHost {
                            writer: format!(
                                "{}.cluster-x.us-east-1.rds.amazonaws.com",
                                cluster.name
                            ),
                            reader: format!(
                                "{}.cluster-ro-x.us-east-1.rds.amazonaws.com",
                                cluster.name
                            ),
                        }),
                        port: Some(5432),
                        status: Some("available".into()),
                        engine: Some("aurora-postgresql".into()),
                        master_user_secret_arn: None,
                    },
                );
            }
            // tunnels are closed, and nothing else is live
            _ => {}
        }
    }
    LiveState {
        bastions,
        clusters,
        instances: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        processes: Default::default(),
        records: Vec::new(),
        holder: None,
        warnings: Vec::new(),
        activity: BTreeMap::new(),
    }
}

fn observations(manifest: &Manifest, world: &LiveState) -> Inspected {
    let tunnels = manifest
        .resources
        .iter()
        .enumerate()
        .filter_map(|(index, resource)| match &resource.declaration {
            ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => Some((
                index,
                (
                    VpcTunnelObservation {
                        tunnel: tunnel
                            .to_domain()
                            .with_status(VpcTunnelStatus::Closed, None),
                        hash: declastruct_aws::TunnelId::parse("0123456789abcdef"),
                        meta: None,
                        holders: Vec::new(),
                        damage: None,
                        processes: Vec::new(),
                        restarts: 0,
                        last_restart: None,
                    },
                    resolve_tunnel_target(&tunnel.into, world.target_lookups("us-east-1"))
                        .unwrap_or_else(|error| panic!("{error}")),
                ),
            )),
            _ => None,
        })
        .collect();
    Inspected {
        tunnels,
        stranded: BTreeMap::new(),
    }
}

/// load, validate, observe in memory, diff, order and hash
fn plan_from_text(text: &str) -> Plan {
    let manifest = parse_manifest("bench.yml", text.to_string())
        .unwrap_or_else(|_| panic!("the manifest is valid"));
    let world = world_for(&manifest);
    let resources = assemble(&manifest, &world, observations(&manifest, &world))
        .unwrap_or_else(|_| panic!("the manifest assembles"));
    Plan::compute(
        &resources,
        Wish {
            uri: "bench.yml".into(),
            ..Wish::default()
        },
    )
    .unwrap_or_else(|error| panic!("{error}"))
}

/// the manifest sizes every group measures
const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// one criterion group over the manifest sizes, 20 samples each; `work` runs once per iteration on the text
fn measure_sizes<T>(
    criterion: &mut Criterion,
    name: &str,
    throughput: bool,
    work: impl Fn(&str) -> T,
) {
    let mut group = criterion.benchmark_group(name);
    group.sample_size(20);
    for total in SIZES {
        let text = manifest_text(total);
        if throughput {
            let changes = plan_from_text(&text).changes.len();
            group.throughput(Throughput::Elements(changes as u64));
        }
        group.bench_with_input(
            BenchmarkId::from_parameter(total),
            &text,
            |bencher, text| bencher.iter(|| black_box(work(black_box(text)))),
        );
    }
    group.finish();
}

/// receives the parser's events and keeps nothing: what reading the YAML costs before declastruct does anything
struct Discard(usize);

impl yaml_rust2::parser::MarkedEventReceiver for Discard {
    fn on_event(&mut self, _: yaml_rust2::Event, marker: yaml_rust2::scanner::Marker) {
        self.0 = self.0.wrapping_add(marker.index());
    }
}

fn engine(criterion: &mut Criterion) {
    measure_sizes(criterion, "plan_in_memory", true, plan_from_text);
    measure_sizes(criterion, "load_and_validate", false, |text| {
        parse_manifest("bench.yml", text.to_string()).is_ok()
    });
    // the floor under `load_and_validate`: the YAML parser's events alone, for the same manifests
    measure_sizes(criterion, "yaml_events_only", false, |text| {
        let mut discard = Discard(0);
        let parsed = yaml_rust2::parser::Parser::new_from_str(text).load(&mut discard, false);
        (parsed.is_ok(), discard.0)
    });
}

criterion_group!(benches, engine);
criterion_main!(benches);
