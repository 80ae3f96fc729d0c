//! The HTTP side of the admin view: `/metrics` (OpenMetrics text) and a JSON API
//! (`/api/status`, `/api/endpoints`, `/api/connections`, `/api/calls`).
//!
//! The HTTP task owns no gateway state. Each request becomes an [`AdminRequest`] sent to
//! the control task, which answers with owned data over a oneshot channel.

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot};

/// What the HTTP side asks the control task for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AdminQuery {
    Metrics,
    Status,
    Endpoints,
    Connections,
    Calls,
    /// Per-call trace: list, start (`Some(true)`), stop (`Some(false)`).
    Trace(Option<(String, bool)>),
}

/// The control task's answer.
#[derive(Debug)]
pub(crate) enum AdminReply {
    Text(String),
    Json(serde_json::Value),
    BadRequest(String),
}

/// One request with its reply channel.
#[derive(Debug)]
pub(crate) struct AdminRequest {
    pub(crate) query: AdminQuery,
    pub(crate) reply: oneshot::Sender<AdminReply>,
}

async fn ask(tx: &mpsc::Sender<AdminRequest>, query: AdminQuery) -> Response {
    let (reply, rx) = oneshot::channel();
    if tx.send(AdminRequest { query, reply }).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "gateway stopping\n").into_response();
    }
    match rx.await {
        Ok(AdminReply::Text(t)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            t,
        )
            .into_response(),
        Ok(AdminReply::Json(v)) => axum::Json(v).into_response(),
        Ok(AdminReply::BadRequest(e)) => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "gateway stopping\n").into_response(),
    }
}

/// Binds the admin HTTP server and serves it until the sender side closes.
pub(crate) async fn serve(
    bind: SocketAddr,
    tx: mpsc::Sender<AdminRequest>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(tx): State<mpsc::Sender<AdminRequest>>| async move {
                ask(&tx, AdminQuery::Metrics).await
            }),
        )
        .route(
            "/api/status",
            get(|State(tx): State<mpsc::Sender<AdminRequest>>| async move {
                ask(&tx, AdminQuery::Status).await
            }),
        )
        .route(
            "/api/endpoints",
            get(|State(tx): State<mpsc::Sender<AdminRequest>>| async move {
                ask(&tx, AdminQuery::Endpoints).await
            }),
        )
        .route(
            "/api/connections",
            get(|State(tx): State<mpsc::Sender<AdminRequest>>| async move {
                ask(&tx, AdminQuery::Connections).await
            }),
        )
        .route(
            "/api/calls",
            get(|State(tx): State<mpsc::Sender<AdminRequest>>| async move {
                ask(&tx, AdminQuery::Calls).await
            }),
        )
        .route("/api/trace", get(|State(tx): State<mpsc::Sender<AdminRequest>>| async move { ask(&tx, AdminQuery::Trace(None)).await }))
        .route(
            "/api/trace/{call}",
            axum::routing::put(|State(tx): State<mpsc::Sender<AdminRequest>>, Path(call): Path<String>| async move {
                ask(&tx, AdminQuery::Trace(Some((call, true)))).await
            })
            .delete(|State(tx): State<mpsc::Sender<AdminRequest>>, Path(call): Path<String>| async move {
                ask(&tx, AdminQuery::Trace(Some((call, false)))).await
            }),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "admin HTTP server stopped");
        }
    });
    Ok((local, task))
}
