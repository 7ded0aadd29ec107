//! `request_options.request_tags` of a gRPC request, read from the raw
//! message: Firestore added `RequestOptions` to its requests after the
//! generated types firegate decodes with, so the field is found by number
//! (`google/firestore/v1/firestore.proto`, `RequestOptions` in
//! `common.proto`: `repeated string request_tags = 1`).

use super::GrpcMethod;

/// The field number of `request_options` in each request firegate serves.
fn options_field(method: GrpcMethod) -> u32 {
    match method {
        GrpcMethod::GetDocument => 10,
        GrpcMethod::ListDocuments => 13,
        GrpcMethod::CreateDocument => 6,
        GrpcMethod::UpdateDocument => 5,
        GrpcMethod::DeleteDocument => 3,
        GrpcMethod::BatchGetDocuments => 8,
        GrpcMethod::BeginTransaction => 3,
        GrpcMethod::Commit => 4,
        GrpcMethod::Rollback => 3,
        GrpcMethod::RunQuery => 11,
        GrpcMethod::RunAggregationQuery => 9,
        GrpcMethod::PartitionQuery => 7,
        GrpcMethod::ListCollectionIds => 5,
        GrpcMethod::BatchWrite => 4,
    }
}

/// `request_options` of a `ListenRequest`.
pub const LISTEN_OPTIONS_FIELD: u32 = 5;

/// The tags of a unary request's message.
pub fn request_tags(method: GrpcMethod, message: &[u8]) -> Vec<String> {
    tags_in(message, options_field(method))
}

/// The tags in every `field` (a `RequestOptions`) of `message`, in order;
/// repeated occurrences of a message field merge, as protobuf reads them.
/// What does not parse yields what was read before it: the message itself
/// was decoded already, and tags only go to the audit line.
pub fn tags_in(message: &[u8], field: u32) -> Vec<String> {
    let mut tags = Vec::new();
    for (number, options) in fields(message) {
        if number == field {
            for (inner, tag) in fields(options) {
                if inner == 1 {
                    tags.push(String::from_utf8_lossy(tag).into_owned());
                }
            }
        }
    }
    tags
}

/// The length-delimited fields of a message, as (number, bytes); other
/// wire types are skipped, and reading stops at what does not parse.
fn fields(mut rest: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    std::iter::from_fn(move || {
        loop {
            let key = varint(&mut rest)?;
            let number = u32::try_from(key >> 3).ok()?;
            match key & 7 {
                0 => {
                    varint(&mut rest)?;
                }
                1 => rest = rest.get(8..)?,
                5 => rest = rest.get(4..)?,
                2 => {
                    let len = usize::try_from(varint(&mut rest)?).ok()?;
                    let value = rest.get(..len)?;
                    rest = &rest[len..];
                    return Some((number, value));
                }
                _ => return None,
            }
        }
    })
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto;
    use prost::Message;

    /// `message` with `RequestOptions { request_tags: tags }` appended as
    /// field `number`, as a newer client encodes it.
    fn with_options(mut message: Vec<u8>, number: u32, tags: &[&str]) -> Vec<u8> {
        let mut options = Vec::new();
        for tag in tags {
            prost::encoding::string::encode(1, &(*tag).to_owned(), &mut options);
        }
        prost::encoding::bytes::encode(number, &options, &mut message);
        message
    }

    #[test]
    fn tags_are_read_by_the_field_number_of_each_request() {
        let get = proto::GetDocumentRequest {
            name: "projects/p/databases/(default)/documents/a/b".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let tagged = with_options(get.clone(), 10, &["checkout", "p1"]);
        // The generated type still decodes it (the field is unknown to it).
        assert!(proto::GetDocumentRequest::decode(tagged.as_slice()).is_ok());
        assert_eq!(
            request_tags(GrpcMethod::GetDocument, &tagged),
            ["checkout", "p1"]
        );
        assert!(request_tags(GrpcMethod::GetDocument, &get).is_empty());
        // Field 10 of a commit is not its options.
        assert!(request_tags(GrpcMethod::Commit, &tagged).is_empty());
        let commit = with_options(Vec::new(), 4, &["batch"]);
        assert_eq!(request_tags(GrpcMethod::Commit, &commit), ["batch"]);
    }

    #[test]
    fn repeated_options_merge_and_listen_has_its_own_number() {
        let once = with_options(Vec::new(), LISTEN_OPTIONS_FIELD, &["a"]);
        let twice = with_options(once, LISTEN_OPTIONS_FIELD, &["b"]);
        assert_eq!(tags_in(&twice, LISTEN_OPTIONS_FIELD), ["a", "b"]);
    }

    #[test]
    fn what_does_not_parse_ends_the_reading_without_a_panic() {
        let tagged = with_options(Vec::new(), 10, &["kept"]);
        let mut cut = tagged.clone();
        cut.extend_from_slice(&[0x52, 0x7f]); // field 10, 127 bytes that are not there
        assert_eq!(request_tags(GrpcMethod::GetDocument, &cut), ["kept"]);
        for garbage in [&[0xff; 12][..], &[0x0b], &[0x52], &[]] {
            assert!(request_tags(GrpcMethod::GetDocument, garbage).is_empty());
        }
        let bad_utf8 = with_options(Vec::new(), 10, &[]);
        let mut options = Vec::new();
        prost::encoding::bytes::encode(1, &vec![0xffu8, b'x'], &mut options);
        let mut message = bad_utf8.clone();
        prost::encoding::bytes::encode(10, &options, &mut message);
        assert_eq!(
            request_tags(GrpcMethod::GetDocument, &message),
            ["\u{fffd}x"]
        );
    }
}
