//! .what = how a batched describe call is split when it names more values than one filter may carry
//! .why = bastions, clusters, DB instances and custom endpoints are all read in as few calls as the APIs allow,
//! and each API caps a filter's values; one place chunks, runs the chunks concurrently and joins their answers

use std::future::Future;

use crate::error::AwsError;

/// .what = the RDS identifiers to ask for: lower case, sorted, each once
/// .why = RDS stores identifiers in lower case; a name declared twice (or in two cases) is asked for once
pub(crate) fn rds_identifiers<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut identifiers: Vec<String> = names.into_iter().map(str::to_ascii_lowercase).collect();
    identifiers.sort();
    identifiers.dedup();
    identifiers
}

/// .what = runs `ask` once per chunk of at most `limit` filter values, concurrently, and joins what they found;
/// `None` asks once without a filter (every resource of the kind)
/// .why = a filter over more values than the API accepts is refused; the first failed chunk fails the whole
pub(crate) async fn ask_in_chunks<T, F, Fut>(
    values: Option<&[String]>,
    limit: usize,
    ask: F,
) -> Result<Vec<T>, AwsError>
where
    F: Fn(Option<Vec<String>>) -> Fut,
    Fut: Future<Output = Result<Vec<T>, AwsError>>,
{
    let chunks: Vec<Option<Vec<String>>> = match values {
        None => vec![None],
        Some(values) => values
            .chunks(limit)
            .map(|chunk| Some(chunk.to_vec()))
            .collect(),
    };
    let answers = futures::future::try_join_all(chunks.into_iter().map(ask)).await?;
    Ok(answers.into_iter().flatten().collect())
}
