//! The realtime simulator: a stand-in for the OpenAI Realtime API on loopback.
fn main() {
    eprintln!("realtime-sim: not built yet");
    std::process::exit(1);
}
