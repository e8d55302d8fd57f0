//! Conversation memory kept on the device (`session.memory = "on"`): the last turns as text,
//! bounded, under the state directory, given to the next session as conversation items.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::session::Role;

/// Turns kept; older ones fall off.
pub const MAX_TURNS: usize = 20;
/// Longest text kept per turn (characters).
pub const MAX_TURN_CHARS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Turn {
    role: String,
    text: String,
}

pub struct Memory {
    path: PathBuf,
    turns: VecDeque<Turn>,
}

/// `$STATE_DIRECTORY` (systemd `StateDirectory=`), else /var/lib/realtime-voiced.
pub fn state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| std::env::split_paths(&v).next())
        .unwrap_or_else(|| PathBuf::from("/var/lib/realtime-voiced"))
}

impl Memory {
    /// Loads `dir/memory.json`; a missing or unreadable file starts empty (the reason is
    /// returned for the log), because losing memory must never stop the daemon.
    pub fn load(dir: &Path) -> (Memory, Option<String>) {
        let path = dir.join("memory.json");
        let (turns, problem) = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<Turn>>(&bytes) {
                Ok(t) => (t.into_iter().collect(), None),
                Err(e) => (
                    VecDeque::new(),
                    Some(format!(
                        "ignoring unreadable memory {}: {e}",
                        path.display()
                    )),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (VecDeque::new(), None),
            Err(e) => (
                VecDeque::new(),
                Some(format!("cannot read memory {}: {e}", path.display())),
            ),
        };
        let mut memory = Memory { path, turns };
        while memory.turns.len() > MAX_TURNS {
            memory.turns.pop_front();
        }
        (memory, problem)
    }

    pub fn turns(&self) -> impl Iterator<Item = (Role, &str)> {
        self.turns.iter().map(|t| {
            let role = if t.role == "assistant" {
                Role::Assistant
            } else {
                Role::User
            };
            (role, t.text.as_str())
        })
    }

    pub fn len(&self) -> usize {
        self.turns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Adds a turn and saves.
    pub fn remember(&mut self, role: Role, text: &str) -> std::io::Result<()> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let text: String = text.chars().take(MAX_TURN_CHARS).collect();
        self.turns.push_back(Turn {
            role: role.as_str().to_owned(),
            text,
        });
        while self.turns.len() > MAX_TURNS {
            self.turns.pop_front();
        }
        self.save()
    }

    pub fn clear(&mut self) -> std::io::Result<()> {
        self.turns.clear();
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes to a temporary file and renames it, so a power cut leaves the old or the new file.
    fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(&self.turns).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_bounded_turns_across_loads_and_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut m, problem) = Memory::load(dir.path());
        assert!(m.is_empty() && problem.is_none());
        for i in 0..(MAX_TURNS + 5) {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            m.remember(role, &format!("turn {i}")).expect("save");
        }
        m.remember(Role::User, "   ").expect("blank is skipped");
        let long = "x".repeat(MAX_TURN_CHARS * 2);
        m.remember(Role::User, &long).expect("save");
        let (m2, _) = Memory::load(dir.path());
        assert_eq!(m2.len(), MAX_TURNS);
        let turns: Vec<_> = m2.turns().collect();
        assert_eq!(turns[0], (Role::User, "turn 6"));
        assert_eq!(turns.last().map(|t| t.1.len()), Some(MAX_TURN_CHARS));
        let mut m2 = m2;
        m2.clear().expect("clear");
        assert!(Memory::load(dir.path()).0.is_empty());
        m2.clear().expect("clearing twice is fine");
    }

    #[test]
    fn a_corrupt_file_starts_empty_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("memory.json"), b"{not json").expect("write");
        let (m, problem) = Memory::load(dir.path());
        assert!(m.is_empty());
        assert!(problem
            .expect("reason")
            .contains("ignoring unreadable memory"));
    }
}
