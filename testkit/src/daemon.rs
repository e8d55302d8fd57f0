//! The daemon's event loop assembled in the test's process, with no sound card: the parts
//! every in-process test gives it, in one place.

use std::path::Path;
use std::sync::Arc;

use realtime_voiced::audio::NullAudio;
use realtime_voiced::config::Config;
use realtime_voiced::daemon::tools::Tools;
use realtime_voiced::daemon::{Daemon, Parts};
use realtime_voiced::transport::Connector;

/// A daemon that reaches the service through `connector`, plays and hears nothing, offers the
/// tools `config` names and keeps its state in `state_dir`. Run it with `tokio::spawn(d.run())`
/// after taking `d.handle()`.
pub fn build(config: Config, connector: Arc<dyn Connector>, state_dir: &Path) -> Daemon {
    let tools = Tools::new(&config.session.tools);
    Daemon::new(
        config,
        Parts {
            connector,
            audio: Arc::new(NullAudio),
            tools: Arc::new(tools),
            state_dir: state_dir.to_owned(),
        },
    )
}
