//! `:partitionQuery`: split a collection group into ranges of documents
//! for parallel reads (the Node client's `getPartitions`), as Firestore
//! does: cursors at evenly spaced document names, never less than 128
//! documents apart.

use serde_json::{Value as Json, json};

use super::documents::{decode_page_token, encode_page_token};
use super::ids::compare_paths;
use super::query::Query;
use super::routes::Call;
use super::rpc::read_time;
use super::store::document_name;
use super::wire::count;
use super::{Answer, EmulatorError, Shared};

/// Firestore makes no partition smaller than this.
const MIN_PARTITION_SIZE: usize = 128;

/// `:partitionQuery` below the call's parent.
pub fn partition_query(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let query =
        Query::parse(call.body.get("structuredQuery").ok_or_else(|| {
            EmulatorError::InvalidArgument("structuredQuery is required".into())
        })?)?;
    query.check_partitionable()?;
    let wanted = match call.body.get("partitionCount") {
        None | Some(Json::Null) => 0,
        Some(n) => count(n, "partitionCount")?,
    };
    if wanted == 0 {
        return Err(EmulatorError::InvalidArgument(
            "partitionCount must be positive".into(),
        ));
    }
    let page_size = match call.body.get("pageSize") {
        None | Some(Json::Null) => usize::MAX,
        Some(n) => match count(n, "pageSize")? {
            0 => usize::MAX,
            n => n,
        },
    };
    let start = match call.body_str("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => decode_page_token(token)?,
    };
    let at = read_time(call.body.get("readTime"))?;
    let state = shared.lock();
    let mut names: Vec<&[String]> = Vec::new();
    let snapshot = state.snapshot(&call.database, at);
    if let Some(documents) = snapshot.as_deref() {
        let results = query.run(&call.database, &call.path, documents);
        names = results
            .documents
            .iter()
            .map(|(p, _)| p.as_slice())
            .collect();
    }
    names.sort_by(|a, b| compare_paths(a.iter().map(String::as_str), b.iter().map(String::as_str)));
    let points = split_points(names.len(), wanted);
    let end = start.saturating_add(page_size).min(points.len());
    let partitions: Vec<Json> = points
        .get(start.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|&i| json!({ "values": [{ "referenceValue": document_name(&call.database, names[i]) }] }))
        .collect();
    let mut body = json!({ "partitions": partitions });
    if end < points.len() {
        body["nextPageToken"] = Json::from(encode_page_token(end));
    }
    Ok(Answer::Object(body))
}

/// Indices of the documents that start each partition after the first: at
/// most `wanted` of them, evenly spaced, at least [`MIN_PARTITION_SIZE`] apart.
fn split_points(documents: usize, wanted: usize) -> Vec<usize> {
    let size = documents
        .div_ceil(wanted.saturating_add(1))
        .max(MIN_PARTITION_SIZE);
    (1..=wanted)
        .map(|n| n.saturating_mul(size))
        .take_while(|&i| i < documents)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_hold_at_least_128_documents() {
        assert_eq!(split_points(383, 2), [128, 256]);
        assert_eq!(split_points(384, 5), [128, 256]);
        assert_eq!(split_points(127, 3), Vec::<usize>::new());
        assert_eq!(split_points(1000, 1), [500]);
        assert_eq!(split_points(1000, 3), [250, 500, 750]);
        assert_eq!(split_points(0, 1), Vec::<usize>::new());
    }
}
