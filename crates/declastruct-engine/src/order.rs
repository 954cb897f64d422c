use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::{Edge, EngineError, ResourceAddress};

/// .what = the order in which to apply resources: every edge's `before` ahead of its `after`,
/// otherwise the order they were declared in
/// .why = apply must start a bastion before its tunnel and close a tunnel before its bastion stops
pub fn order_by_dependencies(
    addresses: &[ResourceAddress],
    edges: &[Edge],
) -> Result<(Vec<usize>, Vec<Vec<usize>>), EngineError> {
    let index_of: HashMap<&ResourceAddress, usize> = addresses
        .iter()
        .enumerate()
        .map(|(index, address)| (address, index))
        .collect();
    let lookup = |address: &ResourceAddress| {
        index_of
            .get(address)
            .copied()
            .ok_or_else(|| EngineError::UnknownEdge {
                slug: address.slug.clone(),
            })
    };

    let mut successors = vec![Vec::new(); addresses.len()];
    let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); addresses.len()];
    for edge in edges {
        let (before, after) = (lookup(&edge.before)?, lookup(&edge.after)?);
        if !predecessors[after].contains(&before) {
            successors[before].push(after);
            predecessors[after].push(before);
        }
    }

    let mut waiting_on: Vec<usize> = predecessors.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..addresses.len())
        .filter(|&index| waiting_on[index] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(addresses.len());
    while let Some(Reverse(index)) = ready.pop() {
        order.push(index);
        for &next in &successors[index] {
            waiting_on[next] -= 1;
            if waiting_on[next] == 0 {
                ready.push(Reverse(next));
            }
        }
    }

    if order.len() < addresses.len() {
        return Err(EngineError::Cycle {
            members: find_cycle(&successors, &waiting_on)
                .into_iter()
                .map(|index| addresses[index].slug.clone())
                .collect(),
        });
    }
    Ok((order, predecessors))
}

/// walks from any node still waiting until a node repeats: that walk is a cycle
fn find_cycle(successors: &[Vec<usize>], waiting_on: &[usize]) -> Vec<usize> {
    let stuck = |index: usize| waiting_on[index] > 0;
    let Some(start) = (0..waiting_on.len()).find(|&index| stuck(index)) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut current = start;
    loop {
        let Some(&next) = successors[current].iter().find(|&&next| stuck(next)) else {
            return path;
        };
        if let Some(position) = path.iter().position(|&seen| seen == next) {
            let mut cycle = path.split_off(position);
            cycle.push(next);
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(slug: &str) -> ResourceAddress {
        ResourceAddress {
            class: "Test".into(),
            slug: slug.into(),
        }
    }

    fn edge(before: &str, after: &str) -> Edge {
        Edge {
            before: address(before),
            after: address(after),
        }
    }

    #[test]
    fn keeps_declaration_order_without_edges() {
        let addresses = [address("a"), address("b"), address("c")];
        let (order, _) = order_by_dependencies(&addresses, &[]).expect("no cycle");
        assert_eq!(order, vec![0, 1, 2]);
    }

    #[test]
    fn puts_dependencies_first() {
        let addresses = [address("tunnel"), address("bastion"), address("cluster")];
        let edges = [edge("bastion", "tunnel"), edge("cluster", "tunnel")];
        let (order, predecessors) = order_by_dependencies(&addresses, &edges).expect("no cycle");
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(predecessors[0], vec![1, 2]);
    }

    #[test]
    fn rejects_cycles_naming_their_members() {
        let addresses = [address("a"), address("b"), address("c")];
        let edges = [edge("a", "b"), edge("b", "c"), edge("c", "b")];
        let error = order_by_dependencies(&addresses, &edges).expect_err("a cycle");
        assert_eq!(
            error.to_string(),
            "the resources depend on each other in a cycle: b -> c -> b"
        );
    }

    #[test]
    fn rejects_edges_to_unknown_resources() {
        let addresses = [address("a")];
        let error = order_by_dependencies(&addresses, &[edge("a", "ghost")]).expect_err("unknown");
        assert!(matches!(error, EngineError::UnknownEdge { slug } if slug == "ghost"));
    }
}
