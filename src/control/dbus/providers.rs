//! The bus side of tools other programs offer (see `crate::provided`): calling a program's
//! `io.thrive.RealtimeVoice1.ToolProvider.Call` back on its own connection, and noticing when a
//! program leaves the bus so that its tools go with it.

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tracing::{debug, info};
use zbus::Connection;

use crate::provided::{CallError, CallFuture, Caller, ProvidedTools};

/// Where a program that offers tools answers their calls.
pub const PROVIDER_PATH: &str = "/io/thrive/RealtimeVoice1/ToolProvider";
/// The interface it answers them on.
pub const PROVIDER_INTERFACE: &str = "io.thrive.RealtimeVoice1.ToolProvider";

/// Calls programs through the daemon's bus connection.
pub struct BusCaller(pub Connection);

impl Caller for BusCaller {
    fn call(&self, owner: String, name: String, arguments: String) -> CallFuture {
        let conn = self.0.clone();
        Box::pin(async move {
            let reply = conn
                .call_method(
                    Some(owner.as_str()),
                    PROVIDER_PATH,
                    Some(PROVIDER_INTERFACE),
                    "Call",
                    &(name.as_str(), arguments.as_str()),
                )
                .await
                .map_err(call_error)?;
            reply
                .body()
                .deserialize::<String>()
                .map_err(|e| CallError::Failed(format!("its answer is not one string (s): {e}")))
        })
    }
}

/// A failed call in one line; a program no longer on the bus is [`CallError::Gone`].
fn call_error(e: zbus::Error) -> CallError {
    match &e {
        zbus::Error::MethodError(name, detail, _) => {
            let detail = detail.as_deref().unwrap_or("").lines().next().unwrap_or("");
            let line = if detail.is_empty() {
                name.to_string()
            } else {
                format!("{name}: {detail}")
            };
            match name.as_str() {
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => CallError::Gone(line),
                _ => CallError::Failed(line),
            }
        }
        _ => CallError::Failed(e.to_string().lines().next().unwrap_or("").to_owned()),
    }
}

/// Unique names that left the bus, as they leave.
pub async fn departures(conn: &Connection) -> zbus::Result<impl Stream<Item = String>> {
    // No property cache: only the signal is wanted.
    let bus = zbus::fdo::DBusProxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let changes = bus.receive_name_owner_changed().await?;
    Ok(changes.filter_map(|signal| async move {
        let args = signal.args().ok()?;
        let name = args.name().to_string();
        // A unique name with no new owner: that connection is gone.
        (name.starts_with(':') && args.new_owner().is_none()).then_some(name)
    }))
}

/// Whether `name` is still on the bus; when the bus cannot say, it is taken to be.
pub async fn still_connected(conn: &Connection, name: &str) -> bool {
    let reply = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "NameHasOwner",
            &(name,),
        )
        .await;
    reply
        .ok()
        .and_then(|r| r.body().deserialize::<bool>().ok())
        .unwrap_or(true)
}

/// A program left the bus: its tools go (the session hears of it through the list).
pub fn departed(provided: &ProvidedTools, name: &str) {
    let dropped = provided.drop_owner(name);
    if dropped.is_empty() {
        debug!(name, "a connection left the bus");
    } else {
        info!(
            owner = name,
            "the program offering {} left the bus; its tools are withdrawn",
            dropped.join(", ")
        );
    }
}

/// On a new connection to the bus: the programs of the last one are gone with it, and calls go
/// through this one.
pub fn attach(provided: &ProvidedTools, conn: &Connection) {
    provided.clear();
    provided.set_caller(Some(Arc::new(BusCaller(conn.clone()))));
}
