//! Emulator refusals as gRPC statuses, with the codes Firestore uses.

use tonic::{Code, Status};

use super::super::EmulatorError;

pub fn status(error: &EmulatorError) -> Status {
    let code = match error {
        EmulatorError::InvalidArgument(_) => Code::InvalidArgument,
        EmulatorError::RouteNotFound(_) | EmulatorError::NotFound(_) => Code::NotFound,
        EmulatorError::AlreadyExists(_) => Code::AlreadyExists,
        EmulatorError::FailedPrecondition(_) => Code::FailedPrecondition,
        EmulatorError::Aborted(_) => Code::Aborted,
    };
    tracing::debug!(reason = error.reason(), "emulator refused a gRPC call");
    Status::new(code, error.api_error().message)
}

impl From<EmulatorError> for Status {
    fn from(error: EmulatorError) -> Status {
        status(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_firestore() {
        let cases = [
            (
                EmulatorError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (EmulatorError::NotFound("x".into()), Code::NotFound),
            (
                EmulatorError::AlreadyExists("x".into()),
                Code::AlreadyExists,
            ),
            (
                EmulatorError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (EmulatorError::Aborted("x".into()), Code::Aborted),
        ];
        for (error, code) in cases {
            assert_eq!(status(&error).code(), code, "{error:?}");
        }
    }
}
