use sha2::{Digest, Sha256};

/// .what = generates a deterministic hash for a tunnel configuration
/// .why = enables consistent identification of tunnels across process restarts; it uses the resolved
/// instance id and writer endpoint, so a tunnel to one environment never passes for another's
pub fn get_tunnel_hash(
    instance_id: &str,
    remote_host: &str,
    remote_port: u16,
    local_port: u16,
) -> String {
    let digest = Sha256::digest(
        format!("{instance_id}:{remote_host}:{remote_port}:{local_port}").as_bytes(),
    );
    digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_first_16_hex_characters_of_the_blueprint_formula() {
        // sha256("i-0abc:db.example:5432:7775"), computed independently with `sha256sum`
        let hash = get_tunnel_hash("i-0abc", "db.example", 5432, 7775);
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, EXPECTED);
    }

    const EXPECTED: &str = include_str!("get_tunnel_hash.expected").trim_ascii();

    #[test]
    fn differs_by_instance() {
        assert_ne!(
            get_tunnel_hash("i-0abc", "db.example", 5432, 7775),
            get_tunnel_hash("i-0abd", "db.example", 5432, 7775)
        );
    }
}
