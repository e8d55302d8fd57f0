//! The integration tests, one binary, a module per feature. The real parts they run against
//! (private buses, PulseAudio, the simulator, aiortc, child processes) come from the `testkit`
//! crate.
//!
//! Where a feature is tested end to end:
//! - a whole conversation by voice, with a tool, barge-in, the idle timeout, a reload and a
//!   service restart: `conversation_e2e`;
//! - barge-in at the sound device (a flush silences the speaker): `playback_flush`;
//! - the D-Bus policy and interface on a system bus: `dbus_system_bus`; signals and property
//!   changes: `dbus_signals`;
//! - systemd: `systemd_notify`, `systemd_watchdog`, `systemd_unit`;
//! - the transports alone: `webrtc_transport`, `websocket_transport`, `turn_relay`,
//!   `aiortc_interop`; under the daemon's loop: `daemon_over_webrtc`, `daemon_over_websocket`;
//! - the loop with a scripted service (memory, budget, reconnect, reload): `daemon_loop`.
//!
//! Tests here share one process. Those that set something process-wide (an environment
//! variable, the log subscriber) run again in a process of their own (`testkit::rerun_alone!`);
//! ports are picked free and directories are temporary.

mod aiortc_interop;
mod audio_alsa;
mod audio_selfcheck;
mod cli;
mod config_errors;
mod conversation_e2e;
mod daemon_loop;
mod daemon_over_webrtc;
mod daemon_over_websocket;
mod dbus_signals;
mod dbus_strictness;
mod dbus_system_bus;
mod dbus_tool_providers;
mod echo_cancellation;
mod gpio_panel;
mod hostile_service;
mod live_connect;
mod packaging;
mod playback_flush;
mod realtime_conformance;
mod secrets_in_logs;
mod shutdown_signals;
mod source_layout;
mod systemd_notify;
mod systemd_unit;
mod systemd_watchdog;
mod tokens;
mod turn_relay;
mod webrtc_transport;
mod websocket_transport;

/// The daemon's binary.
pub const DAEMON: &str = env!("CARGO_BIN_EXE_realtime-voiced");
