//! The WebSocket transport: JSON events and base64 PCM16 24 kHz audio over one `wss://` socket.
//!
//! One task owns the socket. It sends the client events it is given, 40 ms of microphone audio
//! per `input_audio_buffer.append` (48 → 24 kHz), decodes assistant audio deltas straight into
//! the speaker (24 → 48 kHz), and reports everything else as [`LinkEvent`]s. Buffers are reused,
//! so audio moves without allocating beyond the socket's own message per send.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};

use super::dialect::{excerpt, Decoded, Dialect};
use super::error::{error_chain, one_line};
use super::websocket_handshake::{handshake_error, host, open_session, Socket};
use super::{ConnectError, Link, LinkContext, LinkEvent};
use crate::audio::resample::{Downsampler, Upsampler};
use crate::audio::{MicFrame, FRAME_SAMPLES};
use crate::config::{Secret, TransportKind};
use crate::logging::{held_back, Throttle};
use crate::session::{ClientEvent, ServerEvent};

/// Largest event acted on. Real events are far smaller (an audio delta is tens of kB); a larger
/// one is dropped with a warning and the session goes on.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Largest message the socket accepts at all; beyond it the connection is closed.
const MAX_SOCKET_MESSAGE: usize = 16 << 20;
/// Microphone frames per `input_audio_buffer.append` (2 × 20 ms).
const FRAMES_PER_APPEND: usize = 2;
/// How long a clean close may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// A send that cannot complete in this time means the connection is stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping this often; a service silent (not even a pong) for `SILENCE_LIMIT` is gone.
const PING_EVERY: Duration = Duration::from_secs(15);
const SILENCE_LIMIT: Duration = Duration::from_secs(40);

/// Dials the service and starts the link's task.
pub async fn connect(
    ctx: &LinkContext,
    dialect: Arc<dyn Dialect>,
    token: &Secret,
) -> Result<Link, ConnectError> {
    let config = &ctx.config;
    let url = dialect
        .websocket_url(&config.api.base_url)
        .map_err(ConnectError::fatal)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::fatal(format!("bad WebSocket URL {url}: {e}")))?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| ConnectError::fatal("the token is not a valid HTTP header value"))?;
    auth.set_sensitive(true);
    request.headers_mut().insert("Authorization", auth);

    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SOCKET_MESSAGE))
        .max_frame_size(Some(MAX_SOCKET_MESSAGE));
    let timeout = Duration::from_millis(config.transport.connect_timeout_ms);
    let dial = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut socket, _response) = match tokio::time::timeout_at(deadline, dial).await {
        Err(_) => {
            return Err(ConnectError::retry(format!(
                "WebSocket connect to {} timed out after {} ms",
                host(&url),
                timeout.as_millis()
            )))
        }
        Ok(Err(e)) => return Err(handshake_error(&url, e)),
        Ok(Ok(ok)) => ok,
    };
    info!(url = %url, "WebSocket connected");
    let started = match open_session(&mut socket, dialect.as_ref(), deadline).await {
        Ok(started) => started,
        Err(e) => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
            return Err(e);
        }
    };

    let (commands_tx, commands_rx) = mpsc::channel(64);
    let (events_tx, events_rx) = mpsc::channel(256);
    if let Some(event) = started {
        // The machine learns the session's id from it, as from Realtime's `session.created`.
        let _ = events_tx.try_send(LinkEvent::Server(event));
    }
    let task = LinkTask {
        ctx: ctx.clone(),
        dialect,
        events: events_tx,
        bad_input: std::sync::Mutex::new(Throttle::peer_input()),
    };
    tokio::spawn(task.run(socket, commands_rx));
    Ok(Link {
        kind: TransportKind::Websocket,
        commands: commands_tx,
        events: events_rx,
    })
}

struct LinkTask {
    ctx: LinkContext,
    dialect: Arc<dyn Dialect>,
    events: mpsc::Sender<LinkEvent>,
    /// Warnings about what the service sent: a few a minute, the rest counted.
    bad_input: std::sync::Mutex<Throttle>,
}

/// Audio state of the link: resamplers and reused buffers.
struct AudioPath {
    down: Downsampler,
    up: Upsampler,
    /// 24 kHz samples waiting to be appended, and when each of their frames was heard.
    pending: Vec<i16>,
    /// Room for 10 ms frames (`audio.frame_ms`): twice as many make an append.
    pending_heard: [Option<std::time::Instant>; 2 * FRAMES_PER_APPEND],
    scratch_bytes: Vec<u8>,
    append_capacity: usize,
    pcm_in: Vec<i16>,
    pcm_out: Vec<i16>,
    /// Item whose audio is flowing (for `AudioStarted` on the first delta of each item).
    playing: Option<Option<String>>,
    /// Item the user talked over: its late deltas are dropped.
    muted: Option<String>,
    /// When the service's audio starts and stops, for an API that does not say.
    activity: crate::transport::activity::AudioActivity,
}

impl AudioPath {
    fn new() -> Self {
        AudioPath {
            down: Downsampler::default(),
            up: Upsampler::default(),
            pending: Vec::with_capacity(FRAMES_PER_APPEND * FRAME_SAMPLES / 2),
            pending_heard: [None; 2 * FRAMES_PER_APPEND],
            scratch_bytes: Vec::new(),
            append_capacity: 0,
            pcm_in: Vec::new(),
            pcm_out: Vec::new(),
            playing: None,
            muted: None,
            activity: Default::default(),
        }
    }
}

impl LinkTask {
    async fn run(self, socket: Socket, mut commands: mpsc::Receiver<ClientEvent>) {
        // Answers arrive ahead of time: the whole queue is the answer, not delay.
        self.ctx.speaker.set_paced(false);
        let (mut sink, mut stream) = socket.split();
        // One link at a time drains the microphone; an older link lets go when it ends, and
        // until then this one already carries events.
        let lock = Arc::clone(&self.ctx.microphone).lock_owned();
        tokio::pin!(lock);
        let mut mic: Option<MicGuard> = None;
        let mut audio = AudioPath::new();
        let mut mic_open = true;
        let mut keepalive = tokio::time::interval(PING_EVERY);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = tokio::time::Instant::now();
        let mut activity_check = tokio::time::interval(crate::transport::activity::CHECK_EVERY);
        let tells_playout = self.dialect.reports_playout();
        let reason = loop {
            tokio::select! {
                _ = activity_check.tick(), if !tells_playout => {
                    if audio.activity.quiet(std::time::Instant::now()) {
                        let stopped = ServerEvent::AudioStopped { interrupted: false };
                        if self.events.send(LinkEvent::Server(stopped)).await.is_err() {
                            return;
                        }
                    }
                },
                command = commands.recv() => match command {
                    Some(event) => {
                        audio.note_sent(&event);
                        let mut failed = None;
                        for text in self.dialect.encode(&event) {
                            if let Err(e) = send(&mut sink, Message::text(text)).await {
                                failed = Some(e);
                                break;
                            }
                        }
                        if let Some(e) = failed {
                            break e;
                        }
                    }
                    None => {
                        // The daemon let go of the link: hang up politely, but never hang.
                        if let Some(goodbye) = self.dialect.closing() {
                            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::text(goodbye))).await;
                        }
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                        debug!("WebSocket closed by the daemon");
                        return;
                    }
                },
                guard = &mut lock, if mic.is_none() => mic = Some(guard),
                frame = next_frame(&mut mic), if mic_open => match frame {
                    Some(frame) => {
                        if let Some(text) = self.capture(&mut audio, &frame) {
                            if let Err(e) = send(&mut sink, Message::text(text)).await {
                                break e;
                            }
                            for heard in audio.pending_heard.iter_mut().filter_map(Option::take) {
                                self.ctx.latency.frame_sent(heard);
                            }
                        }
                    }
                    None => {
                        warn!("the microphone stopped; the conversation continues without it");
                        mic_open = false;
                    }
                },
                _ = keepalive.tick() => {
                    if last_heard.elapsed() >= SILENCE_LIMIT {
                        break format!(
                            "no word from the service for {} s; connection presumed lost",
                            SILENCE_LIMIT.as_secs()
                        );
                    }
                    if let Err(e) = send(&mut sink, Message::Ping(Default::default())).await {
                        break e;
                    }
                },
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = tokio::time::Instant::now();
                        if !self.incoming(&mut audio, text.as_str()).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Binary(data))) => {
                        debug!(bytes = data.len(), "ignoring a binary message");
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(f) if !f.reason.is_empty() => format!(
                                "the service closed the connection ({}: {})",
                                u16::from(f.code),
                                one_line(&f.reason, 200)
                            ),
                            Some(f) => format!("the service closed the connection ({})", u16::from(f.code)),
                            None => "the service closed the connection".to_owned(),
                        };
                    }
                    // Ping or pong: tungstenite answers pings itself.
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        break format!("the service sent an oversized message ({e}); connection closed");
                    }
                    // The machine says "connection lost: "; the reason is the cause.
                    Some(Err(e)) => break format!("the WebSocket failed: {}", error_chain(&e)),
                    None => break "the WebSocket ended without a close".to_owned(),
                },
            }
        };
        info!("WebSocket link ended: {reason}");
        let held = self.bad_input.lock().map_or(0, |t| t.held());
        if held > 0 {
            warn!("{held} more warnings about what the service sent were held back");
        }
        let _ = self.events.send(LinkEvent::Closed { reason }).await;
    }

    /// Downsamples one frame; returns an append event once enough audio is gathered.
    fn capture(&self, audio: &mut AudioPath, frame: &MicFrame) -> Option<String> {
        let mut half = [0i16; FRAME_SAMPLES / 2];
        let n = audio.down.process(frame.samples(), &mut half);
        if let Some(slot) = audio.pending_heard.iter_mut().find(|h| h.is_none()) {
            *slot = Some(frame.heard_at);
        }
        audio.pending.extend_from_slice(&half[..n]);
        if audio.pending.len() < FRAMES_PER_APPEND * FRAME_SAMPLES / 2 {
            return None;
        }
        // The socket takes ownership of each message: one allocation of the right size.
        let mut text = String::with_capacity(audio.append_capacity);
        self.dialect
            .encode_audio_append(&audio.pending, &mut audio.scratch_bytes, &mut text);
        audio.append_capacity = text.len();
        audio.pending.clear();
        Some(text)
    }

    /// Whether a warning about the service's input is to be logged now (see [`Throttle`]).
    fn admit_warning(&self) -> Option<u64> {
        self.bad_input
            .lock()
            .ok()
            .and_then(|mut t| t.admit(std::time::Instant::now()))
    }

    /// Handles one server message; false when the daemon is gone.
    async fn incoming(&self, audio: &mut AudioPath, text: &str) -> bool {
        if text.len() > MAX_EVENT_BYTES {
            if let Some(held) = self.admit_warning() {
                warn!(
                    bytes = text.len(),
                    "dropping an oversized event from the service (limit {MAX_EVENT_BYTES} bytes): {}{}",
                    excerpt(text),
                    held_back(held)
                );
            }
            return true;
        }
        let event = match self.dialect.decode(text) {
            Decoded::Event(event) => event,
            Decoded::AudioDelta { item_id, base64 } => {
                return self.play(audio, item_id.as_deref(), &base64).await;
            }
            Decoded::Ignored(_) => return true,
            Decoded::Malformed(why) => {
                if let Some(held) = self.admit_warning() {
                    warn!(
                        "dropping a malformed event from the service: {why}{}",
                        held_back(held)
                    );
                }
                return true;
            }
        };
        if matches!(event, ServerEvent::AudioStopped { .. }) {
            audio.playing = None;
        }
        self.events.send(LinkEvent::Server(event)).await.is_ok()
    }

    async fn play(&self, audio: &mut AudioPath, item_id: Option<&str>, base64: &str) -> bool {
        if item_id.is_some() && audio.muted.as_deref() == item_id {
            return true;
        }
        audio.scratch_bytes.clear();
        if let Err(e) = base64::engine::general_purpose::STANDARD
            .decode_vec(base64.as_bytes(), &mut audio.scratch_bytes)
        {
            if let Some(held) = self.admit_warning() {
                warn!(
                    "dropping undecodable audio from the service: {e}{}",
                    held_back(held)
                );
            }
            return true;
        }
        audio.pcm_in.clear();
        audio.pcm_in.extend(
            audio
                .scratch_bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        audio.pcm_out.resize(audio.pcm_in.len() * 2, 0);
        let n = audio.up.process(&audio.pcm_in, &mut audio.pcm_out);
        if !self.dialect.reports_playout() {
            // No items and no start or end events: the audio's level says when a turn starts.
            self.ctx.speaker.push(&audio.pcm_out[..n]);
            if audio
                .activity
                .heard(&audio.pcm_in, std::time::Instant::now())
            {
                let event = ServerEvent::AudioStarted { item_id: None };
                return self.events.send(LinkEvent::Server(event)).await.is_ok();
            }
            return true;
        }
        let is_new = match &audio.playing {
            None => true,
            Some(current) => current.as_deref() != item_id,
        };
        if is_new {
            // Before its first sample: the engine counts what is heard of each item.
            self.ctx.speaker.item_boundary();
        }
        self.ctx.speaker.push(&audio.pcm_out[..n]);
        if is_new {
            audio.playing = Some(item_id.map(str::to_owned));
            let event = ServerEvent::AudioStarted {
                item_id: item_id.map(str::to_owned),
            };
            return self.events.send(LinkEvent::Server(event)).await.is_ok();
        }
        true
    }
}

type Sink = futures_util::stream::SplitSink<Socket, Message>;
type MicGuard = tokio::sync::OwnedMutexGuard<mpsc::Receiver<MicFrame>>;

/// The next microphone frame once the microphone is ours; never resolves before that.
async fn next_frame(mic: &mut Option<MicGuard>) -> Option<MicFrame> {
    match mic {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends one message, bounded in time; the error is the link's closing reason.
async fn send(sink: &mut Sink, message: Message) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "sending to the service failed: {}",
            error_chain(&e)
        )),
        Err(_) => Err(format!(
            "sending to the service stalled for {} s; connection presumed lost",
            SEND_TIMEOUT.as_secs()
        )),
    }
}

impl AudioPath {
    /// Barge-in: audio of the interrupted item still in flight must not reach the speaker.
    fn note_sent(&mut self, event: &ClientEvent) {
        match event {
            ClientEvent::Truncate { item_id, .. } => self.muted = Some(item_id.clone()),
            ClientEvent::ResponseCancel => {
                if let Some(Some(item)) = self.playing.take() {
                    self.muted = Some(item);
                }
            }
            _ => {}
        }
    }
}
