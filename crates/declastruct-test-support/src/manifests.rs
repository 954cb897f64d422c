/// .what = a manifest of `tunnels` tunnels over `groups` bastions (`bastion-N`, declared running) and `groups`
/// clusters (`cluster-N`), on local ports from `first_port`
/// .why = request-count tests and benchmarks plan the same large manifests
pub fn large_manifest(tunnels: usize, groups: usize, first_port: usize) -> String {
    let groups = groups.max(1);
    let mut text = String::from("resources:\n");
    for group in 0..groups {
        text.push_str(&format!(
            "  - kind: DeclaredAwsEc2Instance\n    exid: bastion-{group}\n    status: running\n  - kind: DeclaredAwsRdsCluster\n    name: cluster-{group}\n"
        ));
    }
    for tunnel in 0..tunnels {
        text.push_str(&format!(
            "  - kind: DeclaredAwsVpcTunnel\n    via:\n      mechanism: aws.ssm\n      bastion: {{ exid: bastion-{} }}\n    into:\n      cluster: {{ name: cluster-{} }}\n    from:\n      host: localhost\n      port: {}\n    status: OPEN\n",
            tunnel % groups,
            (tunnel / groups) % groups,
            first_port + tunnel
        ));
    }
    text
}
