//! What can go wrong with one Graph call, classified so the durable job queue can decide whether to retry
//! (graph.md §5) and the FM can be told something useful.

use std::time::Duration;

use crate::botframework::token::TokenError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// 429. Outlook sometimes omits `Retry-After`, so the queue needs its own backoff as well.
    #[error("Microsoft Graph throttled the request (retry after {retry_after:?})")]
    Throttled { retry_after: Option<Duration> },
    /// 503/504 and other server-side failures that may pass.
    #[error("Microsoft Graph answered HTTP {status} (transient; retry after {retry_after:?})")]
    Transient {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// 403: missing consent or role, or an Exchange access policy / RBAC scope excludes the mailbox.
    #[error("Microsoft Graph denied access: {code}: {message} (request-id {})", .request_id.as_deref().unwrap_or("-"))]
    Forbidden {
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// 404: unknown user, no Exchange Online mailbox, or the item is gone.
    #[error("Microsoft Graph found nothing: {code}: {message} (request-id {})", .request_id.as_deref().unwrap_or("-"))]
    NotFound {
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("Microsoft Graph rejected the request: HTTP {status} {code}: {message} (request-id {})", .request_id.as_deref().unwrap_or("-"))]
    Permanent {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// 401. The client has already dropped its cached token, so one more attempt uses a fresh one.
    #[error("Microsoft Graph did not accept the token: {code}")]
    Unauthorized { code: String },
    /// Nothing reached Graph (connect, DNS or TLS failure).
    #[error("request not sent to Microsoft Graph: {0}")]
    NotSent(String),
    /// The request may have reached Graph, but no complete answer came back.
    #[error("no response from Microsoft Graph (request may have been applied): {0}")]
    Unconfirmed(String),
    /// A mail or draft an earlier attempt may have made could not be looked for in the mailbox (the search
    /// was refused): it must be held for an operator, neither sent again nor looked for again.
    #[error(
        "may have been made by an earlier attempt, and the mailbox could not be searched for it: {0}"
    )]
    Unchecked(String),
    /// A success status with a body that is not the expected JSON: the operation did happen.
    #[error("undecodable Microsoft Graph response: {raw}")]
    Decode { raw: String },
    #[error(transparent)]
    Token(TokenError),
    /// fieldbot could not build the request (empty id, unusable base URL, too many items): sending it
    /// again will not help.
    #[error("invalid Microsoft Graph request: {0}")]
    InvalidRequest(String),
}

impl GraphError {
    /// Whether repeating the same request is safe and useful. `idempotent` is true for GET, PATCH and
    /// event creation with a `transactionId`; an unconfirmed `sendMail` or draft creation may already have
    /// happened, so the caller must reconcile instead of re-sending.
    pub fn is_retryable(&self, idempotent: bool) -> bool {
        match self {
            GraphError::Throttled { .. }
            | GraphError::Transient { .. }
            | GraphError::NotSent(_)
            | GraphError::Unauthorized { .. } => true,
            GraphError::Unconfirmed(_) => idempotent,
            GraphError::Unchecked(_) => false,
            // Nothing was sent to Graph, so only the token endpoint's health matters.
            GraphError::Token(e) => e.is_transient(),
            GraphError::Forbidden { .. }
            | GraphError::NotFound { .. }
            | GraphError::Permanent { .. }
            | GraphError::Decode { .. }
            | GraphError::InvalidRequest(_) => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Throttled { retry_after } | GraphError::Transient { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The Graph error code (`ErrorAccessDenied`, `Request_ResourceNotFound`, …), when the answer had one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Forbidden { code, .. }
            | GraphError::NotFound { code, .. }
            | GraphError::Permanent { code, .. }
            | GraphError::Unauthorized { code } => Some(code.as_str()).filter(|c| !c.is_empty()),
            _ => None,
        }
    }

    /// The `request-id` Microsoft support asks for, when the answer had one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            GraphError::Forbidden { request_id, .. }
            | GraphError::NotFound { request_id, .. }
            | GraphError::Permanent { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// One plain sentence an FM can act on, naming `subject` (the mailbox or user involved), never a stack
    /// of JSON.
    pub fn user_message(&self, subject: &str) -> String {
        match self {
            GraphError::Throttled { .. } | GraphError::Transient { .. } => {
                "Microsoft Graph is busy; fieldbot will retry.".to_owned()
            }
            GraphError::NotSent(_) => {
                "fieldbot could not reach Microsoft Graph; it will retry.".to_owned()
            }
            GraphError::Forbidden { code, .. } if is_directory_code(code) => format!(
                "fieldbot is not allowed to look up {subject}; ask your Microsoft 365 admin to grant fieldbot's directory permissions."
            ),
            GraphError::Forbidden { .. } => format!(
                "fieldbot may not use {subject}'s mailbox; ask your Microsoft 365 admin to allow it (application access policy)."
            ),
            GraphError::NotFound { code, .. } if code.eq_ignore_ascii_case("ErrorItemNotFound") => {
                format!("The item was not found in {subject}'s mailbox; it may have been deleted or moved.")
            }
            GraphError::NotFound { code, .. } if code.to_ascii_lowercase().contains("mailbox") => {
                format!(
                    "{subject} has no Exchange Online mailbox fieldbot can use; check the address or ask your Microsoft 365 admin."
                )
            }
            GraphError::NotFound { .. } => format!("No user {subject} in this tenant."),
            GraphError::Permanent { code, .. } if !code.is_empty() => format!(
                "Microsoft Graph refused fieldbot's request for {subject} ({code}); please report this to your fieldbot admin."
            ),
            GraphError::Permanent { status, .. } => format!(
                "Microsoft Graph refused fieldbot's request for {subject} (HTTP {status}); please report this to your fieldbot admin."
            ),
            GraphError::Unauthorized { .. } => {
                "fieldbot's sign-in to Microsoft Graph was not accepted; it will retry with a fresh one.".to_owned()
            }
            GraphError::Unconfirmed(_) | GraphError::Unchecked(_) | GraphError::Decode { .. } => format!(
                "Microsoft Graph did not confirm the change for {subject}; check {subject}'s mailbox before trying again."
            ),
            GraphError::Token(e) if e.is_transient() => {
                "fieldbot could not sign in to Microsoft Graph; it will retry.".to_owned()
            }
            GraphError::Token(_) => "fieldbot's Microsoft Graph credentials were rejected; ask your admin to check the app registration (the client secret may have expired).".to_owned(),
            GraphError::InvalidRequest(_) => {
                format!("\"{subject}\" is not a user or mailbox fieldbot can ask Microsoft Graph about.")
            }
        }
    }
}

/// Entra ID (directory) codes are `Authorization_RequestDenied`-style; Outlook's are `ErrorAccessDenied`.
fn is_directory_code(code: &str) -> bool {
    code.starts_with("Authorization_") || code.starts_with("Request_")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn forbidden(code: &str) -> GraphError {
        GraphError::Forbidden {
            code: code.to_owned(),
            message: "Access to OData is disabled.".to_owned(),
            request_id: Some("rid-1".to_owned()),
        }
    }

    fn not_found(code: &str) -> GraphError {
        GraphError::NotFound {
            code: code.to_owned(),
            message: "x".to_owned(),
            request_id: None,
        }
    }

    #[test]
    fn retryability_table() {
        let s = Duration::from_secs;
        let table: Vec<(GraphError, bool, bool)> = vec![
            (GraphError::Throttled { retry_after: None }, true, true),
            (
                GraphError::Transient {
                    status: 503,
                    retry_after: Some(s(1)),
                },
                true,
                true,
            ),
            (GraphError::NotSent("x".into()), true, true),
            (
                GraphError::Unauthorized {
                    code: "InvalidAuthenticationToken".into(),
                },
                true,
                true,
            ),
            (GraphError::Unconfirmed("x".into()), false, true),
            (GraphError::Unchecked("x".into()), false, false),
            (forbidden("ErrorAccessDenied"), false, false),
            (not_found("ErrorItemNotFound"), false, false),
            (
                GraphError::Permanent {
                    status: 400,
                    code: "ErrorInvalidRecipients".into(),
                    message: String::new(),
                    request_id: None,
                },
                false,
                false,
            ),
            (GraphError::Decode { raw: String::new() }, false, false),
            (
                GraphError::Token(TokenError::Request("down".into())),
                true,
                true,
            ),
            (
                GraphError::Token(TokenError::Rejected {
                    status: 401,
                    error: "invalid_client".into(),
                }),
                false,
                false,
            ),
            (GraphError::InvalidRequest("x".into()), false, false),
        ];
        for (err, non_idempotent, idempotent) in table {
            assert_eq!(
                err.is_retryable(false),
                non_idempotent,
                "{err:?} non-idempotent"
            );
            assert_eq!(err.is_retryable(true), idempotent, "{err:?} idempotent");
        }
    }

    #[test]
    fn retry_after_only_from_throttling_and_transient() {
        let d = Some(Duration::from_secs(7));
        assert_eq!(GraphError::Throttled { retry_after: d }.retry_after(), d);
        assert_eq!(
            GraphError::Transient {
                status: 503,
                retry_after: d
            }
            .retry_after(),
            d
        );
        assert_eq!(forbidden("ErrorAccessDenied").retry_after(), None);
    }

    #[test]
    fn user_messages_name_the_subject_and_say_what_to_do() {
        let who = "dana@contoso.com";
        assert_eq!(
            forbidden("ErrorAccessDenied").user_message(who),
            "fieldbot may not use dana@contoso.com's mailbox; ask your Microsoft 365 admin to allow it (application access policy)."
        );
        assert_eq!(
            not_found("Request_ResourceNotFound").user_message(who),
            "No user dana@contoso.com in this tenant."
        );
        assert_eq!(
            GraphError::Throttled { retry_after: None }.user_message(who),
            "Microsoft Graph is busy; fieldbot will retry."
        );
        assert_eq!(
            GraphError::Transient {
                status: 504,
                retry_after: None
            }
            .user_message(who),
            "Microsoft Graph is busy; fieldbot will retry."
        );
        let mailbox = not_found("MailboxNotEnabledForRESTAPI").user_message(who);
        assert!(
            mailbox.contains(who) && mailbox.contains("no Exchange Online mailbox"),
            "{mailbox}"
        );
        assert!(
            forbidden("Authorization_RequestDenied")
                .user_message(who)
                .contains("directory permissions")
        );
        assert!(
            not_found("ErrorItemNotFound")
                .user_message(who)
                .contains("deleted")
        );
    }

    #[test]
    fn every_user_message_is_one_plain_sentence() {
        let errors = vec![
            GraphError::Throttled { retry_after: None },
            GraphError::Transient {
                status: 503,
                retry_after: None,
            },
            forbidden("ErrorAccessDenied"),
            forbidden("Authorization_RequestDenied"),
            not_found("ErrorItemNotFound"),
            not_found("MailboxNotEnabledForRESTAPI"),
            not_found(""),
            GraphError::Permanent {
                status: 400,
                code: "ErrorInvalidRecipients".into(),
                message: "{\"json\": true}".into(),
                request_id: None,
            },
            GraphError::Permanent {
                status: 400,
                code: String::new(),
                message: String::new(),
                request_id: None,
            },
            GraphError::Unauthorized {
                code: "InvalidAuthenticationToken".into(),
            },
            GraphError::NotSent("connect error".into()),
            GraphError::Unconfirmed("timed out".into()),
            GraphError::Unchecked("HTTP 403".into()),
            GraphError::Decode {
                raw: "{\"odd\":1}".into(),
            },
            GraphError::Token(TokenError::Request("x".into())),
            GraphError::Token(TokenError::Config("x".into())),
            GraphError::InvalidRequest("empty".into()),
        ];
        for err in errors {
            let msg = err.user_message("dana@contoso.com");
            assert!(msg.ends_with('.'), "{msg}");
            assert!(!msg.contains('{') && !msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn display_keeps_code_and_request_id_for_logs() {
        let text = forbidden("ErrorAccessDenied").to_string();
        assert!(
            text.contains("ErrorAccessDenied") && text.contains("rid-1"),
            "{text}"
        );
        assert_eq!(forbidden("ErrorAccessDenied").request_id(), Some("rid-1"));
        assert_eq!(
            forbidden("ErrorAccessDenied").code(),
            Some("ErrorAccessDenied")
        );
        assert_eq!(GraphError::NotSent("x".into()).code(), None);
    }
}
