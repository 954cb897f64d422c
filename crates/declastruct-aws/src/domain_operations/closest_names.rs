//! .what = the names closest to a misspelt one
//! .why = "not found" errors say what the user probably meant, for bastions, clusters and DB instances alike

/// .what = up to three `candidates` within a few edits of `name`, best first
/// .why = a suggestion must be plausible: at most half the longer name's length (and at least two) edits away
pub(crate) fn closest_names(
    name: &str,
    candidates: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut scored: Vec<(usize, String)> = candidates
        .into_iter()
        .map(|candidate| (strsim::levenshtein(name, &candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len().max(name.len()) / 2).max(2))
        .collect();
    scored.sort();
    scored.dedup();
    scored
        .into_iter()
        .take(3)
        .map(|(_, candidate)| candidate)
        .collect()
}

/// .what = for each of `names`, its closest `candidates` (as `closest_names`), in the order of `names`
/// .why = every misspelt name of a kind is answered from one listing of what exists
pub(crate) fn closest_names_of_each(names: &[&str], candidates: &[String]) -> Vec<Vec<String>> {
    names
        .iter()
        .map(|name| closest_names(name, candidates.iter().cloned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_names_best_first() {
        let candidates = [
            "vpc-main-bastion",
            "vpc-dev-bastion",
            "something-else",
            "vpc-main-bastion",
        ]
        .map(String::from);
        assert_eq!(
            closest_names("vpc-mian-bastion", candidates),
            ["vpc-main-bastion", "vpc-dev-bastion"]
        );
        assert!(closest_names("x", ["completely-different".to_string()]).is_empty());
    }
}
