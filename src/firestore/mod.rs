//! The REST wire: Firestore REST v1's route table, and `classify`, which
//! decodes a request's URL and JSON body into the model's
//! [`Operation`](crate::model::Operation), naming every document and
//! collection it touches.

mod body;
mod classify;
mod data_check;
pub(crate) mod data_json;
pub mod mask;
mod messages;
#[cfg(test)]
mod proptests;
mod route;
mod shape;
pub mod splice;
pub mod status;

pub use classify::{
    Classified, Location, Presented, TransactionUse, WriteSite, classify, classify_request,
    classify_with, write_sites,
};
pub use route::{Route, refuse_grpc, route};
