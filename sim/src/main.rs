//! `realtime-sim`: a stand-in for the OpenAI Realtime API on 127.0.0.1, for the demo and tests.
//!
//! Prints `listening on 127.0.0.1:PORT` on stdout once it accepts connections.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use realtime_sim::{server, Reply, Sim, SimOptions};

#[derive(Clone, Copy, ValueEnum)]
enum ReplyArg {
    Echo,
    Tone,
    /// WebRTC: the caller's audio straight back, continuously (no responses).
    Mirror,
}

#[derive(Parser)]
#[command(
    name = "realtime-sim",
    version,
    about = "Realtime API simulator on loopback"
)]
struct Cli {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Answer token requests with this HTTP status (401, 429, 500…).
    #[arg(long, value_name = "STATUS", value_parser = clap::value_parser!(u16).range(400..600))]
    fail_token: Option<u16>,
    /// Responses call this tool first and wait for its output.
    #[arg(long, value_name = "NAME")]
    tool: Option<String>,
    /// Drop each session this many milliseconds after it opened.
    #[arg(long, value_name = "MS")]
    drop_after_ms: Option<u64>,
    /// Delay every HTTP answer by this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    slow_ms: u64,
    /// What the assistant answers with.
    #[arg(long, value_enum, default_value = "echo")]
    reply: ReplyArg,
    /// Fixed transcript for what the user said (default: "heard N ms of speech").
    #[arg(long)]
    transcript: Option<String>,
    /// Accept only tokens minted here and not yet expired (401 otherwise), as the service does.
    #[arg(long)]
    strict_tokens: bool,
    /// Minted tokens live this many seconds, whatever was asked for.
    #[arg(long, value_name = "S")]
    token_lifetime_s: Option<u64>,
    /// Refuse the first call or WebSocket with 401, as for a token revoked meanwhile.
    #[arg(long)]
    refuse_first_session: bool,
    /// Seconds added to the simulator's clock (Date headers, expires_at); may be negative.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    clock_skew_s: i64,
    /// Cancelled responses also carry a function call that never completed.
    #[arg(long)]
    cancelled_calls: bool,
    /// The next N responses end `failed`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    fail_responses: u32,
    /// The next N response.create lose a race with a response the service starts itself.
    #[arg(long, value_name = "N", default_value_t = 0)]
    race_responses: u32,
    /// Send session_expired and close this many milliseconds after a session opens.
    #[arg(long, value_name = "MS")]
    session_expired_after_ms: Option<u64>,
    /// Notice speech this many milliseconds after it starts, as a service a network away does.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    speech_start_delay_ms: u64,
    /// WebRTC: ICE ticks and consent checks every 200 ms (webrtc-rs's default) instead of every
    /// 20 ms; calls come up about 200 ms later.
    #[arg(long)]
    slow_ice: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = SimOptions {
        port: cli.port,
        fail_token: cli.fail_token,
        tool: cli.tool,
        drop_after_ms: cli.drop_after_ms,
        slow_ms: cli.slow_ms,
        reply: match cli.reply {
            ReplyArg::Echo => Reply::Echo,
            ReplyArg::Tone => Reply::Tone,
            ReplyArg::Mirror => Reply::Mirror,
        },
        transcript: cli.transcript,
        strict_tokens: cli.strict_tokens,
        token_lifetime_s: cli.token_lifetime_s,
        refuse_first_session: cli.refuse_first_session,
        clock_skew_s: cli.clock_skew_s,
        cancelled_calls: cli.cancelled_calls,
        fail_responses: cli.fail_responses,
        race_responses: cli.race_responses,
        session_expired_after_ms: cli.session_expired_after_ms,
        speech_start_delay_ms: cli.speech_start_delay_ms,
        slow_ice: cli.slow_ice,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realtime-sim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut running = match server::start(Sim::new(options)).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("realtime-sim: cannot listen on 127.0.0.1:{}: {e}", cli.port);
                return ExitCode::FAILURE;
            }
        };
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {}", running.addr);
        let _ = out.flush();
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("realtime-sim: cannot watch SIGTERM: {e}");
                    return ExitCode::FAILURE;
                }
            };
        tokio::select! {
            () = running.wait() => ExitCode::FAILURE,
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            _ = term.recv() => ExitCode::SUCCESS,
        }
    })
}
