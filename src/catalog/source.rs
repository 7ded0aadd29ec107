//! Reading the catalog: `GET {base}/api/catalog/entities/by-query`, page by
//! page (`cursor` from `pageInfo.nextCursor`), with only the fields the
//! index needs.

use serde::Deserialize;
use serde_json::Value;

/// The fields asked for.
pub const FIELDS: &str = "kind,metadata.name,metadata.namespace,spec.owner,spec.type,spec.parent,spec.children,spec.memberOf,relations";
/// Largest page answer read.
const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;
/// Most pages read in one sync (a cursor that never ends is an error).
const MAX_PAGES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("catalog answer: {0}")]
    Answer(#[from] crate::fetch::AnswerError),
    #[error("catalog answer is not a by-query page: {0}")]
    Shape(String),
    #[error("catalog paging did not end after {0} pages")]
    Endless(usize),
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Value>,
    #[serde(rename = "pageInfo", default)]
    page_info: PageInfo,
}

#[derive(Default, Deserialize)]
struct PageInfo {
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
}

/// Every entity of the catalog at `base`.
pub async fn fetch_all(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    page_size: usize,
) -> Result<Vec<Value>, SourceError> {
    let url = format!("{base}/api/catalog/entities/by-query");
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let limit = page_size.to_string();
        let mut request = client
            .get(&url)
            .query(&[("fields", FIELDS), ("limit", limit.as_str())]);
        // The cursor carries the query; the first page skips the count.
        request = match &cursor {
            Some(c) => request.query(&[("cursor", c.as_str())]),
            None => request.query(&[("totalItems", "exclude")]),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (_, body) = crate::fetch::answer(request, MAX_PAGE_BYTES).await?;
        let page: Page =
            serde_json::from_slice(&body).map_err(|e| SourceError::Shape(e.to_string()))?;
        let empty = page.items.is_empty();
        items.extend(page.items);
        match page.page_info.next_cursor {
            Some(next) if !empty => cursor = Some(next),
            _ => return Ok(items),
        }
    }
    Err(SourceError::Endless(MAX_PAGES))
}

/// The entities of a snapshot file: `{"items": [...]}` (what `firegate
/// catalog dump` writes) or a bare array.
pub fn snapshot_items(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Array(items) => Ok(items),
        Value::Object(mut o) => match o.remove("items") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err("a snapshot is `{\"items\": [...]}`".into()),
        },
        _ => Err("a snapshot is `{\"items\": [...]}`".into()),
    }
}
