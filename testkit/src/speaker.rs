//! A speaker that keeps everything played into it.

use std::sync::Mutex;

use realtime_voiced::audio::Speaker;

#[derive(Default)]
pub struct RecordingSpeaker {
    samples: Mutex<Vec<i16>>,
}

impl Speaker for RecordingSpeaker {
    fn push(&self, pcm: &[i16]) {
        if let Ok(mut s) = self.samples.lock() {
            s.extend_from_slice(pcm);
        }
    }
}

impl RecordingSpeaker {
    /// A copy of all that was played so far.
    pub fn take(&self) -> Vec<i16> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
