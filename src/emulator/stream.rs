//! Streamed responses: one JSON array sent element by element, the shape
//! Firestore's REST front end uses for `batchGet`, `runQuery` and
//! `runAggregationQuery`.

use bytes::Bytes;
use futures_util::stream;
use http::Response;
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::Value as Json;

use crate::body::{self, Body, BoxError};

/// A `200` whose body is `[elem,\nelem,\n…]`, one frame per element.
pub fn json_array(elements: Vec<Json>) -> Response<Body> {
    let count = elements.len();
    let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = Vec::with_capacity(count + 2);
    frames.push(Ok(Frame::data(Bytes::from_static(b"["))));
    for (index, element) in elements.into_iter().enumerate() {
        let mut chunk = element.to_string();
        if index + 1 < count {
            chunk.push_str(",\n");
        }
        frames.push(Ok(Frame::data(Bytes::from(chunk))));
    }
    frames.push(Ok(Frame::data(Bytes::from_static(b"]"))));
    body::typed(
        http::StatusCode::OK,
        body::boxed(StreamBody::new(stream::iter(frames))),
        "application/json; charset=UTF-8",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    #[tokio::test]
    async fn elements_arrive_as_one_array() {
        let response = json_array(vec![json!({"a": 1}), json!({"b": 2})]);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let parsed: Json = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed, json!([{"a": 1}, {"b": 2}]));
    }
}
