//! What sound devices the system offers, for `ListDevices` and `check-audio`: ALSA's own list
//! of PCMs (its name hints), the hardware PCMs of each card from `/proc/asound`, which of them
//! the configuration names, and who holds a device that is busy: the processes with the
//! card's device node open (as `fuser` finds them), else the pid the kernel names in each open
//! substream's `status` (the thread that opened it, which may have ended since).
//!
//! The service's sandbox hides `/proc/asound` and other processes: there the cards come from
//! alsa-lib, and the only holder it can name is itself.

use std::path::Path;

/// One PCM a program could open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// What goes in `audio.capture_device` / `audio.playback_device`.
    pub name: String,
    pub description: String,
    /// "capture", "playback" or "both".
    pub direction: &'static str,
    /// The sound card's name, for a device on a card.
    pub card: String,
    /// "capture", "playback", "both" or "" (not configured).
    pub configured: &'static str,
    /// Processes holding the card's device open, as `pid 812 (arecord)`; empty when free.
    pub in_use_by: Vec<String>,
}

/// A card as `/proc/asound/cards` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub index: u32,
    pub id: String,
    pub name: String,
}

/// Parses `/proc/asound/cards`: ` 0 [Loopback       ]: Loopback - Loopback` then a long name.
pub fn parse_cards(text: &str) -> Vec<Card> {
    text.lines()
        .filter_map(|line| {
            let (index, rest) = line.trim_start().split_once(' ')?;
            let index = index.parse().ok()?;
            let (id, rest) = rest.trim_start().strip_prefix('[')?.split_once(']')?;
            let name = rest
                .split_once(" - ")
                .map_or(rest, |(_, n)| n)
                .trim_start_matches(':')
                .trim();
            Some(Card {
                index,
                id: id.trim().to_owned(),
                name: name.to_owned(),
            })
        })
        .collect()
}

/// The owner's pid in a substream's `status` (`closed` when nobody has it open).
pub fn parse_owner(status: &str) -> Option<u32> {
    status.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "owner_pid")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// The card and device a PCM name points at, for names that say so: `hw:CARD=Loopback,DEV=1`,
/// `plughw:1,0`, `sysdefault:CARD=Device` (device 0).
pub fn card_and_device(name: &str, cards: &[Card]) -> Option<(u32, u32)> {
    let (_, args) = name.split_once(':')?;
    let mut card = None;
    let mut device = 0;
    for (i, part) in args.split(',').enumerate() {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None if i == 0 => ("CARD", part.trim()),
            None if i == 1 => ("DEV", part.trim()),
            None => continue,
        };
        match key {
            "CARD" => {
                card = value.parse::<u32>().ok().or_else(|| {
                    cards
                        .iter()
                        .find(|c| c.id == value.trim_matches('"'))
                        .map(|c| c.index)
                });
            }
            "DEV" => device = value.parse().ok()?,
            _ => {}
        }
    }
    Some((card?, device))
}

/// A process in words, as `pid 812 (arecord)`.
fn process(pid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(name) => format!("pid {pid} ({})", name.trim()),
        Err(_) => format!("pid {pid}"),
    }
}

/// The process a substream's recorded owner belongs to. The kernel records the thread that
/// opened the device (a daemon's worker thread, say): name its process, as `ps` would.
fn owner_process(tid: u32) -> String {
    let pid = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        })
        .unwrap_or(tid);
    process(pid)
}

/// The processes that have one of `nodes` (`/dev/snd/pcmC0D1c`) open, from their fds.
fn node_holders(nodes: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| nodes.iter().any(|n| target.as_os_str() == n.as_str()))
        });
        if holds {
            found.push(process(pid));
        }
    }
    found
}

/// Who holds the substreams of card `card`, device `device` open, in the given directions.
fn owners(asound: &Path, card: u32, device: u32, sides: &[char]) -> Vec<String> {
    if asound == Path::new(PROC_ASOUND) {
        let nodes: Vec<String> = sides
            .iter()
            .map(|side| format!("/dev/snd/pcmC{card}D{device}{side}"))
            .collect();
        let found = node_holders(&nodes);
        if !found.is_empty() {
            return found;
        }
    }
    let mut found = Vec::new();
    for side in sides {
        let pcm = asound.join(format!("card{card}/pcm{device}{side}"));
        let Ok(subs) = std::fs::read_dir(&pcm) else {
            continue;
        };
        let mut subs: Vec<_> = subs.flatten().map(|e| e.path()).collect();
        subs.sort();
        for sub in subs {
            let status = std::fs::read_to_string(sub.join("status")).unwrap_or_default();
            if let Some(tid) = parse_owner(&status) {
                let who = owner_process(tid);
                if !found.contains(&who) {
                    found.push(who);
                }
            }
        }
    }
    found
}

const PROC_ASOUND: &str = "/proc/asound";

/// The hardware PCMs `/proc/asound` shows: `(card, device, direction)`.
fn hardware_pcms(asound: &Path, cards: &[Card]) -> Vec<(u32, u32, char)> {
    let mut pcms = Vec::new();
    for card in cards {
        let Ok(entries) = std::fs::read_dir(asound.join(format!("card{}", card.index))) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("pcm") else {
                continue;
            };
            let (num, side) = rest.split_at(rest.len().saturating_sub(1));
            if let (Ok(dev), Some(side @ ('p' | 'c'))) = (num.parse(), side.chars().next()) {
                pcms.push((card.index, dev, side));
            }
        }
    }
    pcms.sort();
    pcms
}

/// A name hint as alsa-lib gives it.
#[derive(Debug, Clone)]
pub struct Hint {
    pub name: String,
    pub description: String,
    /// `None`: both directions.
    pub capture: Option<bool>,
}

/// ALSA's PCM name hints (what `aplay -L` lists).
pub fn alsa_hints() -> Vec<Hint> {
    let Ok(hints) = alsa::device_name::HintIter::new_str(None, "pcm") else {
        return Vec::new();
    };
    hints
        .filter_map(|h| {
            Some(Hint {
                name: h.name?,
                description: h.desc.unwrap_or_default().replace('\n', " — "),
                capture: h.direction.map(|d| d == alsa::Direction::Capture),
            })
        })
        .collect()
}

/// Everything together: the hints, then the cards' hardware PCMs not among them, then the
/// configured devices if ALSA lists neither (a name written by hand, like `plughw:1,0`).
pub fn list_in(
    asound: &Path,
    hints: Vec<Hint>,
    capture_device: &str,
    playback_device: &str,
) -> Vec<DeviceEntry> {
    let mut cards = parse_cards(&std::fs::read_to_string(asound.join("cards")).unwrap_or_default());
    if cards.is_empty() && asound == Path::new(PROC_ASOUND) {
        cards = alsa_cards();
    }
    let mut list: Vec<DeviceEntry> = hints
        .into_iter()
        .filter(|h| h.name != "null")
        .map(|h| entry(h.name, h.description, h.capture, &cards, asound))
        .collect();
    let pcms = hardware_pcms(asound, &cards);
    for &(card, dev, side) in &pcms {
        let name = match cards.iter().find(|c| c.index == card) {
            Some(c) => format!("hw:CARD={},DEV={dev}", c.id),
            None => format!("hw:{card},{dev}"),
        };
        if list.iter().any(|e| e.name == name) {
            continue;
        }
        let other = if side == 'c' { 'p' } else { 'c' };
        let capture = if pcms.contains(&(card, dev, other)) {
            None
        } else {
            Some(side == 'c')
        };
        list.push(entry(
            name,
            "Direct hardware device without any conversions".into(),
            capture,
            &cards,
            asound,
        ));
    }
    for (configured, capture) in [(capture_device, true), (playback_device, false)] {
        if !list.iter().any(|e| e.name == configured) {
            let description = "configured (not among the devices ALSA lists)".to_owned();
            list.push(entry(
                configured.to_owned(),
                description,
                Some(capture),
                &cards,
                asound,
            ));
        }
    }
    for e in &mut list {
        e.configured = match (e.name == capture_device, e.name == playback_device) {
            (true, true) => "both",
            (true, false) => "capture",
            (false, true) => "playback",
            (false, false) => "",
        };
    }
    list
}

fn entry(
    name: String,
    description: String,
    capture: Option<bool>,
    cards: &[Card],
    asound: &Path,
) -> DeviceEntry {
    let sides: &[char] = match capture {
        Some(true) => &['c'],
        Some(false) => &['p'],
        None => &['p', 'c'],
    };
    let (card, in_use_by) = match card_and_device(&name, cards) {
        Some((card, dev)) => (
            cards
                .iter()
                .find(|c| c.index == card)
                .map_or_else(String::new, |c| c.name.clone()),
            owners(asound, card, dev, sides),
        ),
        None => (String::new(), Vec::new()),
    };
    DeviceEntry {
        name,
        description,
        direction: match capture {
            Some(true) => "capture",
            Some(false) => "playback",
            None => "both",
        },
        card,
        configured: "",
        in_use_by,
    }
}

/// The cards as alsa-lib sees them (through their control devices, where `/proc/asound`
/// is hidden).
fn alsa_cards() -> Vec<Card> {
    alsa::card::Iter::new()
        .flatten()
        .filter_map(|card| {
            let ctl = alsa::ctl::Ctl::from_card(&card, false).ok()?;
            let info = ctl.card_info().ok()?;
            Some(Card {
                index: u32::try_from(card.get_index()).ok()?,
                id: info.get_id().ok()?.to_owned(),
                name: info.get_name().ok()?.to_owned(),
            })
        })
        .collect()
}

/// The system's devices, with the configured ones marked. Blocking (alsa-lib reads its
/// configuration and probes cards): call it off the async runtime.
pub fn list(capture_device: &str, playback_device: &str) -> Vec<DeviceEntry> {
    list_in(
        Path::new(PROC_ASOUND),
        alsa_hints(),
        capture_device,
        playback_device,
    )
}

/// As [`list`], from the daemon that has the configured devices open: where the sandbox
/// hides who holds a device, the daemon still knows that it holds its own.
pub fn list_held(capture_device: &str, playback_device: &str) -> Vec<DeviceEntry> {
    let mut list = list(capture_device, playback_device);
    let cards = alsa_cards();
    let me = process(std::process::id());
    let ours: Vec<(u32, u32, &str)> = [(capture_device, "capture"), (playback_device, "playback")]
        .into_iter()
        .filter_map(|(name, side)| {
            let (card, dev) = card_and_device(name, &cards)?;
            Some((card, dev, side))
        })
        .collect();
    for e in &mut list {
        let same_device = card_and_device(&e.name, &cards).is_some_and(|(card, dev)| {
            ours.iter().any(|&(c, d, side)| {
                c == card && d == dev && (e.direction == "both" || e.direction == side)
            })
        });
        let held = same_device || !e.configured.is_empty();
        if held && !e.in_use_by.contains(&me) {
            e.in_use_by.push(me.clone());
        }
    }
    list
}

/// For a device that cannot be opened because it is busy: who has it, in words.
pub fn holders(name: &str, capture: bool) -> Option<String> {
    let asound = Path::new("/proc/asound");
    let cards = parse_cards(&std::fs::read_to_string(asound.join("cards")).unwrap_or_default());
    let (card, dev) = card_and_device(name, &cards)?;
    let who = owners(asound, card, dev, if capture { &['c'] } else { &['p'] });
    (!who.is_empty()).then(|| who.join(", "))
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
