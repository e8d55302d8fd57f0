use super::*;

const CARDS: &str = " 0 [Loopback       ]: Loopback - Loopback
                      Loopback 1
 1 [Device         ]: USB-Audio - USB PnP Sound Device
                      C-Media Electronics Inc. USB PnP Sound Device at usb-3f980000.usb-1.3, full speed
";

/// A `/proc/asound` with two cards; the loopback's playback device 0 is held by `owner`.
fn asound(owner: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("cards"), CARDS).expect("cards");
    for (path, status) in [
        (
            "card0/pcm0p/sub0",
            format!("state: RUNNING\nowner_pid   : {owner}\ntrigger_time: 1.0\n"),
        ),
        ("card0/pcm0p/sub1", "closed\n".to_owned()),
        ("card0/pcm0c/sub0", "closed\n".to_owned()),
        ("card1/pcm0c/sub0", "closed\n".to_owned()),
        ("card1/pcm0p/sub0", "closed\n".to_owned()),
    ] {
        std::fs::create_dir_all(root.join(path)).expect("dir");
        std::fs::write(root.join(path).join("status"), status).expect("status");
    }
    dir
}

#[test]
fn cards_and_owners_are_read_as_the_kernel_writes_them() {
    let cards = parse_cards(CARDS);
    assert_eq!(cards.len(), 2);
    assert_eq!((cards[1].index, cards[1].id.as_str()), (1, "Device"));
    assert_eq!(cards[1].name, "USB PnP Sound Device");
    assert_eq!(parse_owner("closed\n"), None);
    assert_eq!(
        parse_owner("state: RUNNING\nowner_pid   : 812\n"),
        Some(812)
    );
    assert_eq!(
        card_and_device("hw:CARD=Loopback,DEV=1", &cards),
        Some((0, 1))
    );
    assert_eq!(card_and_device("plughw:1,0", &cards), Some((1, 0)));
    assert_eq!(
        card_and_device("sysdefault:CARD=Device", &cards),
        Some((1, 0))
    );
    assert_eq!(card_and_device("default", &cards), None);
    assert_eq!(card_and_device("hw:CARD=Missing", &cards), None);
}

#[test]
fn the_list_marks_the_configured_devices_and_names_who_holds_a_busy_one() {
    // The kernel names the thread that opened the device (here one of this test's threads):
    // the list names its process.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let _ = tid_tx.send(unsafe { libc::gettid() } as u32);
        let _ = done_rx.recv();
    });
    let tid = tid_rx.recv().expect("thread id");
    assert_ne!(tid, std::process::id());
    let dir = asound(tid);
    let hints = vec![
        Hint {
            name: "default".into(),
            description: "Default ALSA Output".into(),
            capture: None,
        },
        Hint {
            name: "null".into(),
            description: "Discard all samples".into(),
            capture: None,
        },
        Hint {
            name: "plughw:CARD=Device,DEV=0".into(),
            description: "USB PnP Sound Device".into(),
            capture: None,
        },
    ];
    let list = list_in(dir.path(), hints, "plughw:CARD=Device,DEV=0", "hw:0,0");
    let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "default",
            "plughw:CARD=Device,DEV=0",
            "hw:CARD=Loopback,DEV=0",
            "hw:CARD=Device,DEV=0",
            "hw:0,0"
        ],
        "null is left out; hardware PCMs follow the hints; a configured name ALSA does not list comes last"
    );
    let usb = &list[1];
    assert_eq!(
        (usb.configured, usb.card.as_str()),
        ("capture", "USB PnP Sound Device")
    );
    assert!(usb.in_use_by.is_empty());
    let loopback = &list[2];
    assert_eq!(loopback.direction, "both", "{loopback:?}");
    drop(done_tx);
    let _ = thread.join();
    let me = format!("pid {} (", std::process::id());
    assert!(
        loopback.in_use_by.len() == 1 && loopback.in_use_by[0].starts_with(&me),
        "{loopback:?}"
    );
    let configured = &list[4];
    assert_eq!(configured.configured, "playback");
    assert_eq!(configured.card, "Loopback");
    assert_eq!(configured.in_use_by.len(), 1, "{configured:?}");
    assert_eq!(list[0].configured, "");
}
