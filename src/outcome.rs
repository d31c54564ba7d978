//! What happened to a request, as the labels of logs and metrics: enums, so that a typo cannot
//! compile into a new metric series.

use crate::inject::{InjectError, SkipReason};

/// The `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Injected: the response carries a patch.
    Patched,
    /// Injected before: an empty patch.
    Unchanged,
    /// Allowed unchanged by a skip rule.
    Skipped,
    Denied,
    /// Not a Pod CREATE: allowed unchanged.
    Ignored,
    /// Refused before admission (transport, body, parse).
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::Unchanged => "unchanged",
            Self::Skipped => "skipped",
            Self::Denied => "denied",
            Self::Ignored => "ignored",
            Self::Rejected => "rejected",
        }
    }
}

/// The `reason` label: why the outcome is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Injected,
    InjectedWithWarnings,
    AlreadyInjected,
    Skip(SkipReason),
    InvalidSetting,
    TemplateError,
    InvalidListeners,
    InvalidNodeId,
    /// `--strict` and an effectiveness finding.
    Ineffective,
    NotAPod,
    NotCreate,
    NoObject,
    MalformedPod,
    NotJson,
    NotAReview,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
    BodyTooLarge,
    BodyBudgetExhausted,
    BodyReadError,
    BodyTimeout,
    TooManyConnections,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::InjectedWithWarnings => "injected-with-warnings",
            Self::AlreadyInjected => "already-injected",
            Self::Skip(reason) => reason.as_str(),
            Self::InvalidSetting => "invalid-setting",
            Self::TemplateError => "template-error",
            Self::InvalidListeners => "invalid-listeners",
            Self::InvalidNodeId => "invalid-node-id",
            Self::Ineffective => "ineffective",
            Self::NotAPod => "not-a-pod",
            Self::NotCreate => "not-create",
            Self::NoObject => "no-object",
            Self::MalformedPod => "malformed-pod",
            Self::NotJson => "not-json",
            Self::NotAReview => "not-a-review",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::NotFound => "not-found",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::BodyTooLarge => "body-too-large",
            Self::BodyBudgetExhausted => "body-budget-exhausted",
            Self::BodyReadError => "body-read-error",
            Self::BodyTimeout => "body-timeout",
            Self::TooManyConnections => "too-many-connections",
        }
    }
}

impl From<&InjectError> for Reason {
    fn from(error: &InjectError) -> Self {
        match error {
            InjectError::Settings(_) => Self::InvalidSetting,
            InjectError::Render { .. } | InjectError::UndefinedReference { .. } => {
                Self::TemplateError
            }
            InjectError::Listeners { .. } => Self::InvalidListeners,
            InjectError::NodeIdOutOfRange { .. } | InjectError::NodeIdNotAVoter { .. } => {
                Self::InvalidNodeId
            }
            InjectError::Strict(_) => Self::Ineffective,
        }
    }
}
