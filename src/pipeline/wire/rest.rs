//! The REST wire's ends: a request decoded by the route table and the JSON
//! classifier, and encoded again as the same request (the transaction id
//! unsealed, writes pinned) for the pooled upstream client.

use bytes::Bytes;
use http::header;
use http::request::Parts;

use super::{Call, Encoded, pin};
use crate::body::{self, Body};
use crate::firestore::splice::Splices;
use crate::firestore::{self, Presented, Route};
use crate::model::{ClassifyError, Operation};
use crate::pipeline::stored::ReadStored;
use crate::pipeline::{Exchange, Pipeline, PipelineError};
use crate::upstream::{AccessToken, Outbound};

/// A REST call as it will be forwarded: the body as it came, and the
/// rewrites bind and pin make to it, applied once on the way out.
pub(super) struct RestCall {
    parts: Parts,
    route: Route,
    body: Bytes,
    splices: Splices,
    presented: Option<Presented>,
}

/// Method + URL + body → `Call` (400/403/404/408/413). Every body is read
/// under the body deadline: in full for the methods whose bodies name
/// documents, and for get, list and delete only to make sure there is none
/// (HTTP/2 can send DATA without declaring a length).
pub(super) async fn classify(
    pipeline: &Pipeline,
    parts: Parts,
    body: Body,
    ex: &mut Exchange,
) -> Result<Call, PipelineError> {
    let route = firestore::route(&parts.method, &parts.uri, &parts.headers)?;
    ex.route = Some((route.method, route.database.name()));
    let bytes = if route.needs_body() {
        pipeline
            .read_body(body, pipeline.settings.max_body_bytes)
            .await?
    } else {
        pipeline.read_body(body, 0).await.map_err(|err| match err {
            PipelineError::BodyTooLarge { .. } => ClassifyError::BodyNotAllowed.into(),
            err => err,
        })?
    };
    ex.add_bytes_in(bytes.len() as u64);
    let capture = pipeline.policy.field_capture();
    let classified = firestore::classify_with(&route, Some(&bytes), capture)?;
    ex.request_tags = crate::audit::request_tags(&classified.request_tags);
    let encoded = Encoded::Rest(RestCall {
        parts,
        route,
        body: bytes,
        splices: Splices::default(),
        presented: classified.transaction.presented,
    });
    Ok(Call::new(
        classified.operation,
        classified.read_time,
        classified.transaction.begins,
        encoded,
    ))
}

impl RestCall {
    pub(super) fn presented(&self) -> Option<&str> {
        self.presented.as_ref().map(|p| p.sealed.as_str())
    }

    pub(super) fn use_transaction(&mut self, upstream: &[u8]) {
        if let Some(presented) = &self.presented {
            presented.replace(&mut self.route, &mut self.splices, upstream);
        }
    }

    pub(super) fn pin(
        &mut self,
        op: &Operation,
        stored: &ReadStored,
        consistent: bool,
    ) -> Result<(), PipelineError> {
        let (route, splices) = (&mut self.route, &mut self.splices);
        pin::pin(route, splices, &self.body, op, stored, consistent)?;
        Ok(())
    }

    /// Streamed to Firestore, streamed back (502/503/504). A bodiless
    /// method goes upstream as it came, with no body at all.
    pub(super) async fn forward(
        &mut self,
        pipeline: &Pipeline,
        op: &Operation,
        token: &AccessToken,
        rewritten: bool,
        ex: &mut Exchange,
    ) -> Result<http::Response<Body>, PipelineError> {
        if rewritten {
            self.parts.headers.remove(header::ACCEPT_ENCODING);
        }
        let body = if self.route.needs_body() {
            let splices = std::mem::take(&mut self.splices);
            let rewritten = splices
                .apply(&self.body)
                .ok_or(ClassifyError::MalformedBody("overlapping rewrites"))?;
            body::full(rewritten)
        } else {
            body::empty()
        };
        // Classify named the database on the exchange already.
        let formatted;
        let database = match &ex.route {
            Some((_, name)) => name.as_str(),
            None => {
                formatted = op.database.name();
                &formatted
            }
        };
        let response = pipeline
            .upstream
            .forward(Outbound {
                method: self.parts.method.clone(),
                path_and_query: &self.route.upstream_path_and_query,
                client_headers: &self.parts.headers,
                client_ip: ex.remote_ip(),
                trusted_proxies: &pipeline.settings.trusted_proxies,
                client_proto: ex.proto(),
                request_id: &ex.request_id,
                database,
                token,
                body,
            })
            .await?;
        ex.upstream_status = Some(response.status().as_u16());
        Ok(response.map(body::boxed))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::model::Database;
    use crate::transaction::{TransactionError, TransactionSealer};

    const ALICE: [u8; 32] = [1; 32];
    const BOB: [u8; 32] = [2; 32];

    fn sealer() -> TransactionSealer {
        TransactionSealer::with_key(
            b"0123456789abcdef0123456789abcdef",
            std::time::Duration::from_secs(60),
        )
        .unwrap()
    }

    fn db() -> Database {
        Database::new("p", "(default)")
    }

    fn call(method: &str, uri: &str, body: &str) -> RestCall {
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let route = firestore::route(&parts.method, &parts.uri, &parts.headers).unwrap();
        let body = Bytes::from(body.to_owned());
        let classified = firestore::classify_request(&route, Some(&body)).unwrap();
        RestCall {
            parts,
            route,
            body,
            splices: Splices::default(),
            presented: classified.transaction.presented,
        }
    }

    fn bind(
        s: &TransactionSealer,
        who: &[u8; 32],
        call: &mut RestCall,
    ) -> Result<(), TransactionError> {
        let upstream = s.unseal(call.presented().unwrap(), who, &db())?;
        call.use_transaction(&upstream);
        Ok(())
    }

    fn forwarded(call: RestCall) -> Bytes {
        call.splices.apply(&call.body).unwrap()
    }

    #[test]
    fn the_body_carries_the_upstream_id_after_binding() {
        let s = sealer();
        let sealed = s.seal(&ALICE, &db(), b"up-id");
        let body = format!(r#"{{"writes":[],"transaction":"{sealed}"}}"#);
        let commit = "/v1/projects/p/databases/(default)/documents:commit";
        let mut bob = call("POST", commit, &body);
        assert_eq!(bind(&s, &BOB, &mut bob), Err(TransactionError::NotOwned));
        let mut alice = call("POST", commit, &body);
        bind(&s, &ALICE, &mut alice).unwrap();
        assert_eq!(
            forwarded(alice),
            format!(
                r#"{{"writes":[],"transaction":"{}"}}"#,
                STANDARD.encode("up-id")
            )
        );
    }

    #[test]
    fn the_query_carries_the_upstream_id_after_binding() {
        let s = sealer();
        let sealed = s.seal(&ALICE, &db(), b"up-id");
        let uri = format!(
            "/v1/projects/p/databases/(default)/documents/a/b?transaction={}",
            percent_encoding::utf8_percent_encode(&sealed, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut get = call("GET", &uri, "");
        bind(&s, &ALICE, &mut get).unwrap();
        assert!(get.splices.is_empty());
        assert_eq!(
            get.route.upstream_path_and_query,
            "/v1/projects/p/databases/(default)/documents/a/b?transaction=dXAtaWQ%3D"
        );
    }

    #[test]
    fn a_call_without_transaction_is_untouched() {
        let mut commit = call(
            "POST",
            "/v1/projects/p/databases/(default)/documents:commit",
            r#"{"writes":[]}"#,
        );
        assert!(commit.presented().is_none());
        commit.use_transaction(b"up-id");
        assert_eq!(forwarded(commit), r#"{"writes":[]}"#);
    }
}
