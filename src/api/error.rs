//! The one place where errors become HTTP responses: `{"error": {"code", "message", "field"?}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::approvals::ApprovalError;
use crate::compliance::ComplianceError;
use crate::decision::RequestError;
use crate::identity::{AuthError, MissingRole};
use crate::killswitch::KillSwitchError;
use crate::ledger::LedgerError;
use crate::lifecycle::VersionError;
use crate::registry::RegistryError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Structured detail: located diagnostics, failing test cases. Boxed: errors travel in
    /// `Result`s on every path and most have none.
    pub details: Option<Box<serde_json::Value>>,
}

/// The error body every failing endpoint answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_json`, `invalid_request`, `unauthorized`, `forbidden`...
    pub code: String,
    pub message: String,
    /// The offending field, as a path such as `resource.type` or `requests[2].action`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `diagnostics: [{file, line, column, message}]` for invalid policies, `failures: [...]` for
    /// failed policy tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        if !field.is_empty() {
            self.field = Some(field);
        }
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                details: self.details.map(|d| *d),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::KeysUnavailable { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "identity_unavailable",
                e.to_string(),
            ),
            _ => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
        }
    }
}

impl From<MissingRole> for ApiError {
    fn from(e: MissingRole) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            e.to_string(),
        )
        .with_field(e.field)
    }
}

impl From<crate::decision::IdempotencyError> for ApiError {
    fn from(e: crate::decision::IdempotencyError) -> Self {
        use crate::decision::IdempotencyError::*;
        match e {
            Conflict(_) => Self::new(StatusCode::CONFLICT, "idempotency_conflict", e.to_string())
                .with_field("Idempotency-Key"),
            Request(e) => e.into(),
            Store(e) => e.into(),
        }
    }
}

impl From<crate::decision::BadIdempotencyKey> for ApiError {
    fn from(e: crate::decision::BadIdempotencyKey) -> Self {
        Self::bad_request("invalid_idempotency_key", e.to_string()).with_field("Idempotency-Key")
    }
}

impl From<crate::authzen::Invalid> for ApiError {
    fn from(e: crate::authzen::Invalid) -> Self {
        ApiError::bad_request("invalid_request", e.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the database is unavailable",
        )
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { field, message } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_record",
                format!("{field}: {message}"),
            )
            .with_field(field),
            RegistryError::Store(e) => e.into(),
            RegistryError::Ledger(e) => e.into(),
            RegistryError::Entity { .. } => {
                tracing::error!(error = %e, "registry entity");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the record could not be turned into a Cedar entity",
                )
            }
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::OutOfRange(_) | LedgerError::Proof(_) => {
                Self::bad_request("invalid_query", e.to_string())
            }
            LedgerError::Store(e) => e.into(),
            LedgerError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                e.to_string(),
            ),
            _ => {
                tracing::error!(error = %e, "ledger");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ledger_error",
                    e.to_string(),
                )
            }
        }
    }
}

impl From<KillSwitchError> for ApiError {
    fn from(e: KillSwitchError) -> Self {
        match e {
            KillSwitchError::Invalid { field, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            )
            .with_field(field),
            KillSwitchError::NotFound(_) => Self::not_found(e.to_string()),
            KillSwitchError::AlreadyReleased(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            KillSwitchError::Ledger(e) => e.into(),
            KillSwitchError::Store(e) => e.into(),
        }
    }
}

impl From<crate::outcomes::OutcomeError> for ApiError {
    fn from(e: crate::outcomes::OutcomeError) -> Self {
        use crate::outcomes::OutcomeError as E;
        match e {
            E::NotFound(_) => Self::not_found(e.to_string()),
            E::Forbidden { .. } => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            E::AlreadyReported(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::NotAllowed(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            ),
            E::Invalid { field, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            )
            .with_field(field),
            E::Ledger(e) => e.into(),
            E::Store(e) => e.into(),
            E::Entry(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            ),
        }
    }
}

impl From<crate::contests::ContestError> for ApiError {
    fn from(e: crate::contests::ContestError) -> Self {
        use crate::contests::ContestError as E;
        match e {
            E::NoDecision(_) | E::NotFound(_) => Self::not_found(e.to_string()),
            E::AlreadyResolved { .. } => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::Invalid { field, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            )
            .with_field(field),
            E::Ledger(e) => e.into(),
            E::Store(e) => e.into(),
            E::Entry(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            ),
        }
    }
}

impl From<crate::incidents::IncidentError> for ApiError {
    fn from(e: crate::incidents::IncidentError) -> Self {
        use crate::incidents::IncidentError as E;
        match e {
            E::NotFound(_) => Self::not_found(e.to_string()),
            E::Conflict { .. } => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::Invalid { ref field, .. } => {
                let field = field.clone();
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    e.to_string(),
                )
                .with_field(field)
            }
            E::Ledger(e) => e.into(),
            E::Store(e) => e.into(),
            E::Entry(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            ),
        }
    }
}

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::NotFound(_) => Self::not_found(e.to_string()),
            ApprovalError::NotPending { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            ApprovalError::NotAllowed(_) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            ApprovalError::Invalid { field, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            )
            .with_field(field),
            ApprovalError::Ledger(e) => e.into(),
            ApprovalError::Store(e) => e.into(),
        }
    }
}

impl From<ComplianceError> for ApiError {
    fn from(e: ComplianceError) -> Self {
        match e {
            ComplianceError::UnknownAgent(_) => Self::not_found(e.to_string()),
            ComplianceError::Invalid { field, message } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("{field}: {message}"),
            )
            .with_field(field),
            ComplianceError::Store(e) => e.into(),
            ComplianceError::Ledger(e) => e.into(),
            ComplianceError::Damaged(_)
            | ComplianceError::Render { .. }
            | ComplianceError::Write(_) => {
                tracing::error!(error = %e, "compliance");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "compliance_error",
                    e.to_string(),
                )
            }
        }
    }
}

impl From<VersionError> for ApiError {
    fn from(e: VersionError) -> Self {
        match e {
            VersionError::Invalid { field, message } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("{field}: {message}"),
            )
            .with_field(field),
            VersionError::Diagnostics(ref diagnostics) => {
                let details = serde_json::json!({ "diagnostics": diagnostics });
                let first = diagnostics
                    .first()
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_policies",
                    format!("{e}: {first}"),
                )
                .with_field("files")
                .with_details(details)
            }
            VersionError::NotFound(_) | VersionError::NoStore(_) => Self::not_found(e.to_string()),
            VersionError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            VersionError::TestsFailed(ref failures) => {
                let details = serde_json::json!({ "failures": failures });
                Self::new(StatusCode::CONFLICT, "policy_tests_failed", e.to_string())
                    .with_details(details)
            }
            VersionError::Store(e) => e.into(),
            VersionError::Ledger(e) => e.into(),
            VersionError::Corrupt(_) => {
                tracing::error!(error = %e, "policy versions");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<crate::policy::control::ControlDenied> for ApiError {
    fn from(e: crate::policy::control::ControlDenied) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
    }
}
