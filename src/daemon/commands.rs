//! What the daemon does with a [`Command`] from D-Bus, the button or a signal, and the checks
//! that can refuse one (no credentials, today's time used up).

use std::time::{Duration, Instant, SystemTime};

use super::budget::local_day;
use super::Daemon;
use crate::control::{Command, Refusal, Reply, SelfCheck};
use crate::session::{Input, State};

impl Daemon {
    pub(super) fn reply(reply: Option<Reply>, result: Result<(), Refusal>) {
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Start(reply) => {
                let result = self.check_audio_free().and_then(|()| self.check_budget());
                if result.is_ok() {
                    // Fed even when not configured: the device shows the error (LED, earcon,
                    // LastError) while the caller gets NotConfigured.
                    self.feed(Input::Start);
                }
                Self::reply(reply, result.and_then(|()| self.check_configured()));
            }
            Command::Stop(reply) => {
                let result =
                    if self.machine.state().is_active() || self.machine.state() == State::Error {
                        Ok(())
                    } else {
                        Err(Refusal::NotActive("no conversation is running".into()))
                    };
                self.feed(Input::Stop);
                Self::reply(reply, result);
            }
            Command::Toggle(reply) => {
                let starting = !self.machine.state().is_active();
                let result = if starting {
                    self.check_audio_free().and_then(|()| self.check_budget())
                } else {
                    Ok(())
                };
                if result.is_ok() {
                    self.feed(Input::Toggle);
                }
                let result = if starting {
                    result.and_then(|()| self.check_configured())
                } else {
                    result
                };
                Self::reply(reply, result);
            }
            Command::SendText(text, reply) => {
                let result = if self.machine.state().is_live() {
                    self.feed(Input::SendText(text));
                    Ok(())
                } else {
                    Err(Refusal::NotActive(format!(
                        "no conversation is connected (state: {})",
                        self.machine.state().as_str()
                    )))
                };
                Self::reply(reply, result);
            }
            Command::SetMuted(muted) => {
                self.parts.audio.set_muted(muted);
                self.snapshot_tx.send_modify(|s| s.muted = muted);
            }
            Command::SetVolume(volume) => {
                let volume = volume.clamp(0.0, 1.0);
                self.parts.audio.set_volume(volume);
                self.snapshot_tx.send_modify(|s| s.volume = volume);
            }
            Command::StopAndMute => {
                self.feed(Input::Stop);
                self.command(Command::SetMuted(true));
            }
            Command::ClearMemory(reply) => {
                let result = self.clear_memory();
                Self::reply(reply, result);
            }
            Command::Reload(config) => self.reload(*config),
            Command::Ping(reply) => Self::reply(reply, Ok(())),
            Command::SelfCheck(check) => self.self_check(check),
            Command::Shutdown => {}
        }
    }

    fn self_check(&mut self, check: SelfCheck) {
        match check {
            SelfCheck::Devices(reply) => {
                let audio = &self.config.audio;
                let _ = reply.send((audio.capture_device.clone(), audio.playback_device.clone()));
            }
            SelfCheck::TestSpeaker(reply) => {
                let _ = reply.send(self.parts.audio.test_speaker().map_err(Refusal::Failed));
            }
            SelfCheck::CheckEcho(reply) => {
                let result = if self.machine.state().is_active() {
                    Err(Refusal::Failed(
                        "a conversation is running: the echo check needs the speaker and the microphone to itself (Stop first)".into(),
                    ))
                } else if self.audio_check_running() {
                    Err(Refusal::Failed("an echo check is already running".into()))
                } else {
                    self.parts.audio.echo_probe().map_err(Refusal::Failed)
                };
                if result.is_ok() {
                    tracing::info!("echo check: playing the chirp and recording it");
                    // A conversation started now would send the chirp to the service.
                    self.audio_check_until = Some(
                        Instant::now()
                            + Duration::from_millis(u64::from(crate::audio::probe::RECORD_MS))
                            + Duration::from_millis(500),
                    );
                }
                let _ = reply.send(result);
            }
        }
    }

    fn audio_check_running(&self) -> bool {
        self.audio_check_until.is_some_and(|t| Instant::now() < t)
    }

    /// Refuses a start while the echo check has the speaker and the microphone.
    pub(super) fn check_audio_free(&self) -> Result<(), Refusal> {
        if self.audio_check_running() {
            return Err(Refusal::Failed(
                "an echo check is running; start again in a few seconds".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn check_configured(&self) -> Result<(), Refusal> {
        self.parts.connector.ready().map_err(Refusal::NotConfigured)
    }

    /// Refuses a start once today's conversation time is used up; otherwise tells the machine
    /// how much is left.
    pub(super) fn check_budget(&mut self) -> Result<(), Refusal> {
        let today = local_day(SystemTime::now());
        if self.budget.exhausted(today) {
            let minutes = self.budget.limit().map_or(0, |l| l.as_secs() / 60);
            return Err(Refusal::LimitReached(format!(
                "today's conversation time ({minutes} min, session.daily_limit_s) is used up; it resets at midnight"
            )));
        }
        let left = self.budget.remaining(today);
        self.feed(Input::BudgetLeft(left));
        Ok(())
    }

    /// Forget the remembered turns (D-Bus `ClearMemory`).
    pub fn clear_memory(&mut self) -> Result<(), Refusal> {
        match &mut self.memory {
            Some(m) => m
                .clear()
                .map_err(|e| Refusal::Failed(format!("cannot clear conversation memory: {e}"))),
            None => Ok(()),
        }
    }
}
